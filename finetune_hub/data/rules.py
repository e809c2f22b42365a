"""Per-example checks on canonical records: the cookbook's seven error kinds without its bugs, plus tool-call
consistency, weights, blank content and preference pairs. Pure functions: a record in, (rule, message) out.

Speed matters (this runs once per example of multi-GB files), so the happy path is a few dict lookups per
message and builds nothing.
"""

from __future__ import annotations

import json
from typing import Any

Problem = tuple[str, str]  # (rule id, message)

ALLOWED_KEYS = frozenset({"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"})
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})  # "function": legacy, the cookbook allows it
_PLAIN_ROLES = frozenset({"system", "user", "assistant"})
PART_TYPES = frozenset({"text", "image_url"})


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _check_parts(content: list[Any], where: str) -> Problem | None:
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in PART_TYPES:
            return "missing_content", f"{where}.content[{j}] is not a text or image_url part"
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            return "missing_content", f"{where}.content[{j}] has no 'text' string"
        if part["type"] == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                return "missing_content", f"{where}.content[{j}] has no image_url.url string"
    return None if content else ("missing_content", f"{where}.content is an empty list")


def _check_function(fn: dict[str, Any], at: str, declared: set[str] | None) -> list[Problem]:
    """A call's `{name, arguments}` (both strings): arguments a JSON object, the name one `tools` declares."""
    problems: list[Problem] = []
    try:
        parsed = json.loads(fn["arguments"])
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        problems.append(("tool_call_arguments_json", f"{at}.arguments is not a JSON object string"))
    if declared is not None and fn["name"] not in declared:
        problems.append(("tool_undeclared", f"{at} calls {fn['name']!r}, which 'tools' does not declare"))
    return problems


def _check_function_call(call: Any, where: str, declared: set[str] | None) -> list[Problem]:
    """The legacy single `function_call` of an assistant turn (before `tool_calls`)."""
    if not isinstance(call, dict) or not all(isinstance(call.get(key), str) for key in ("name", "arguments")):
        return [("tool_call_malformed", f"{where}.function_call needs a name and arguments, both strings")]
    return _check_function(call, f"{where}.function_call", declared)


def _check_tool_calls(calls: Any, where: str, seen: dict[str, bool], declared: set[str] | None) -> list[Problem]:
    if not isinstance(calls, list) or not calls:
        return [("tool_call_malformed", f"{where}.tool_calls must be a non-empty list")]
    problems: list[Problem] = []
    for k, call in enumerate(calls):
        at = f"{where}.tool_calls[{k}]"
        fn = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(call.get("id"), str)
            or call.get("type", "function") != "function"
            or not isinstance(fn.get("name"), str)
            or not isinstance(fn.get("arguments"), str)
        ):
            problems.append(("tool_call_malformed", f"{at} needs id, type 'function', function.name and arguments"))
            continue
        problems += _check_function(fn, f"{at}.function", declared)
        if call["id"] in seen:
            problems.append(("tool_call_duplicate_id", f"{at}: id {call['id']!r} is used twice"))
        seen[call["id"]] = False
    return problems


def _declared_tools(record: dict[str, Any], problems: list[Problem]) -> set[str] | None:
    """The function names `tools` (and its legacy spelling, `functions`) declare; None when neither is there."""
    if record.get("tools") is None and record.get("functions") is None:
        return None
    names: set[str] = set()
    for key, shape in (("tools", "{'type': 'function', 'function': {'name': ...}}"), ("functions", "{'name': ...}")):
        items = record.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(("tools_type", f"'{key}' is a {_type(items)}, not a list"))
            continue
        for k, item in enumerate(items):
            fn = item.get("function") if key == "tools" and isinstance(item, dict) else item
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                problems.append(("tools_type", f"{key}[{k}] needs {shape}"))
            else:
                names.add(fn["name"])
    return names


def check_messages(
    messages: Any, where: str = "messages", *, record: dict[str, Any] | None = None, need_assistant: bool = True
) -> list[Problem]:
    """Checks one messages list (an SFT example, or a preference pair's prompt)."""
    if not isinstance(messages, list) or not messages:
        return [("missing_messages_list", f"'{where}' is {'empty' if messages == [] else _type(messages)}")]
    problems: list[Problem] = []
    declared = _declared_tools(record, problems) if record is not None else None
    has_user = has_assistant = has_system = trained = False
    calls: dict[str, bool] = {}  # id → answered
    pending: list[str] = []  # calls of the latest assistant turn not answered yet
    last_caller = -1
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            problems.append(("message_type", f"{where}[{i}] is a {_type(m)}"))
            continue
        role, content = m.get("role"), m.get("content")
        if type(role) is not str and role is not None:
            problems.append(("unrecognized_role", f"{where}[{i}] has role {json.dumps(role)}, not a string"))
            continue
        if len(m) == 2 and role in _PLAIN_ROLES and type(content) is str and content and not content.isspace():
            # the common {role, content} turn: nothing below can fail (the keys can only be role and content)
            if pending:
                problems.append(("tool_call_unanswered", f"messages[{last_caller}]: call(s) {pending} never answered"))
                pending = []
            if role == "assistant":
                has_assistant = trained = True
            elif role == "user":
                has_user = True
            else:
                has_system = True
            continue
        calling = role == "assistant" and bool(m.get("tool_calls") or m.get("function_call"))
        if role is None or ("content" not in m and not calling):
            problems.append(("message_missing_key", f"{where}[{i}] has no '{'role' if role is None else 'content'}'"))
        if not ALLOWED_KEYS.issuperset(m):
            extra = ", ".join(sorted(str(k) for k in m if k not in ALLOWED_KEYS))
            problems.append(("message_unrecognized_key", f"{where}[{i}] has unknown key(s): {extra}"))
        if role is not None and role not in ROLES:
            problems.append(("unrecognized_role", f"{where}[{i}] has role {role!r}"))
        if isinstance(content, str):
            if not content and not calling:
                problems.append(("missing_content", f"{where}[{i}].content is empty"))
            elif content.isspace():
                problems.append(("blank_content", f"{where}[{i}].content is only whitespace"))
        elif isinstance(content, list) and role in ("user", "system", "assistant"):
            if problem := _check_parts(content, f"{where}[{i}]"):
                problems.append(problem)
        elif "content" in m and not (calling and content is None):
            problems.append(("missing_content", f"{where}[{i}].content is {_type(content)}, not text"))
        if "name" in m and not isinstance(m["name"], str):
            problems.append(("name_type", f"{where}[{i}].name is {_type(m['name'])}"))
        if "weight" in m:
            weight = m["weight"]
            if role != "assistant":
                problems.append(("weight_role", f"{where}[{i}] is a {role} message with a weight"))
            if type(weight) is not int or weight not in (0, 1):
                problems.append(("weight_value", f"{where}[{i}].weight is {json.dumps(weight)}; it must be 0 or 1"))
        if role == "tool":
            answered = m.get("tool_call_id")
            if not isinstance(answered, str) or answered not in calls or calls[answered]:
                orphan = f"{where}[{i}] answers {answered!r}, which no earlier call made"
                problems.append(("tool_response_orphan", orphan))
            else:
                calls[answered] = True
                if answered in pending:
                    pending.remove(answered)
            continue
        if pending:  # a non-tool turn while the previous calls are unanswered
            problems.append(("tool_call_unanswered", f"messages[{last_caller}]: call(s) {pending} never answered"))
            pending = []
        if role == "assistant":
            has_assistant = True
            trained = trained or m.get("weight", 1) != 0
            if "function_call" in m:
                problems += _check_function_call(m["function_call"], f"{where}[{i}]", declared)
            if "tool_calls" in m:
                before = set(calls)
                problems += _check_tool_calls(m["tool_calls"], f"{where}[{i}]", calls, declared)
                pending, last_caller = [c for c in calls if c not in before], i
        elif role == "user":
            has_user = True
        elif role == "system":
            has_system = True
    if pending and last_caller != len(messages) - 1:
        problems.append(("tool_call_unanswered", f"messages[{last_caller}]: call(s) {pending} never answered"))
    if need_assistant:
        if not has_assistant:
            problems.append(("example_missing_assistant_message", "no assistant message"))
        elif not trained:
            problems.append(("no_trained_turn", "every assistant message has weight 0"))
        if not has_user:
            problems.append(("example_missing_user_message", "no user message"))
        if not has_system:
            problems.append(("example_missing_system_message", "no system message"))
    return problems


def check_chat(record: dict[str, Any]) -> list[Problem]:
    problems = check_messages(record.get("messages"), record=record)
    if "parallel_tool_calls" in record and not isinstance(record["parallel_tool_calls"], bool):
        problems.append(
            ("parallel_tool_calls_type", f"'parallel_tool_calls' is {_type(record['parallel_tool_calls'])}")
        )
    return problems


def _check_output(value: Any, key: str) -> list[Problem]:
    if not isinstance(value, list) or not value:
        return [("dpo.malformed", f"'{key}' must be a non-empty list of assistant messages")]
    problems = check_messages(value, key, need_assistant=False)
    if any(isinstance(m, dict) and m.get("role") != "assistant" for m in value):
        problems.append(("dpo.malformed", f"'{key}' may only hold assistant messages"))
    return problems


def check_preference(record: dict[str, Any]) -> list[Problem]:
    prompt = record.get("input")
    if not isinstance(prompt, dict):
        return [("dpo.malformed", f"'input' is {_type(prompt)}; it must be {{'messages': [...]}}")]
    problems = check_messages(prompt.get("messages"), "input.messages", record=prompt, need_assistant=False)
    chosen, rejected = record.get("preferred_output"), record.get("non_preferred_output")
    problems += _check_output(chosen, "preferred_output") + _check_output(rejected, "non_preferred_output")
    if chosen == rejected and chosen is not None:
        problems.append(("dpo.identical", "preferred_output equals non_preferred_output"))
    return problems


def check_text(record: dict[str, Any]) -> list[Problem]:
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return [("missing_content", f"'text' is {'blank' if isinstance(text, str) else _type(text)}")]
    return []


def check(record: dict[str, Any], kind: str) -> list[Problem]:
    if kind == "chat":
        return check_chat(record)
    if kind == "preference":
        return check_preference(record)
    return check_text(record)
