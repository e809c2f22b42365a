"""Vertex Gemini preference-tuning records, both ways: an OpenAI DPO pair ⇄ `contents` + `completions`.

Follows Google's "Prepare preference tuning data for Gemini models": the prompt is supervised-style `contents`,
text only, ending with a user turn; leading system messages go to `system_instruction`; `completions` holds
exactly two single model turns, the preferred one scored 1 and the other scored 0. Vertex preference data has
no tool calls, images, names or weights: `check` says which of those are errors and which are dropped, and
`to_vertex_preference` names every drop (keys of exporters.CHANGES).
"""

from __future__ import annotations

from typing import Any

from finetune_hub.data.findings import RecordError
from finetune_hub.data.importers import Imported, dropped
from finetune_hub.data.vertex_format import TURN_FIELDS, from_vertex, lost_fields, warned_losses

Record = dict[str, Any]
Problem = tuple[str, str]  # (rule id, message)
OUTPUTS = (("preferred_output", 1), ("non_preferred_output", 0))  # canonical key, Vertex score
_PAIR_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})
_INPUT_KEYS = frozenset({"messages", "tools"})
_TOOL_ROLES = ("tool", "function")  # "function": OpenAI's legacy tool answers


def _messages(value: Any) -> list[Record]:
    return [m for m in value if isinstance(m, dict)] if isinstance(value, list) else []


def _prompt(record: Record) -> Record:
    prompt = record.get("input")
    return prompt if isinstance(prompt, dict) else {}


def _uses_tools(message: Record) -> bool:
    return message.get("role") in _TOOL_ROLES or bool(message.get("tool_calls") or message.get("function_call"))


def _has_text(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content)
    parts = content if isinstance(content, list) else []
    return any(isinstance(p, dict) and p.get("type") == "text" and p.get("text") for p in parts)


def _extra_fields(record: Record) -> list[str]:
    """Fields of a pair outside the prompt messages, `tools` and the two outputs, by name."""
    extra = [key for key in record if key not in _PAIR_KEYS]
    return sorted(extra + [f"input.{key}" for key in _prompt(record) if key not in _INPUT_KEYS])


def check(record: Record) -> list[Problem]:
    """Vertex's per-example rules for a canonical preference pair (rules.check_preference covers the shape)."""
    problems: list[Problem] = []
    prompt = _messages(_prompt(record).get("messages"))
    leading = next((i for i, m in enumerate(prompt) if m.get("role") != "system"), len(prompt))
    for i, m in enumerate(prompt[leading:], start=leading):
        if m.get("role") == "system":
            problems.append(
                ("vertex.system_not_first", f"input.messages[{i}] is a system message after the first turn")
            )
    if prompt and prompt[-1].get("role") != "user":
        last = prompt[-1].get("role")
        problems.append(("vertex.preference_last_turn", f"input.messages ends with a {last} turn, not a user turn"))
    outputs = [(key, _messages(record.get(key))) for key, _ in OUTPUTS]
    for where, messages in [("input.messages", prompt), *outputs]:
        for i, m in enumerate(messages):
            content = m.get("content")
            for j, part in enumerate(content if isinstance(content, list) else []):
                if isinstance(part, dict) and part.get("type") != "text":
                    kind = part.get("type")
                    problems.append(("vertex.preference_text_only", f"{where}[{i}].content[{j}] is a {kind} part"))
    for key, messages in outputs:
        if not messages:
            continue  # rules.check_preference reports dpo.malformed
        if len(messages) != 1:
            problems.append(("vertex.preference_output", f"{key} has {len(messages)} messages; Vertex takes one"))
        elif _uses_tools(messages[0]):
            problems.append(("vertex.preference_output", f"{key}[0] calls tools; a Vertex completion is text only"))
        elif not _has_text(messages[0].get("content")):
            problems.append(("vertex.preference_output", f"{key}[0] has no text"))
    everything = prompt + [m for _, messages in outputs for m in messages]
    dropped = ["tool calls"] if any(_uses_tools(m) for m in prompt) else []
    dropped += warned_losses(everything)
    dropped += ["input.tools"] if _prompt(record).get("tools") else []
    dropped += _extra_fields(record)
    if dropped:
        problems.append(("platform.feature_dropped", f"Vertex preference data drops {', '.join(dropped)}"))
    return problems


def _parts(content: Any, changes: list[str]) -> list[Record]:
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Record] = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        else:
            changes.append("vertex.preference_part_dropped")
    return parts


def _dropped_keys(message: Record, changes: list[str]) -> None:
    changes += [f"vertex.{key}_dropped" for key in lost_fields(message)]


def _completion(output: Any, key: str, changes: list[str]) -> Record:
    messages = _messages(output)
    if len(messages) != 1 or len(output) != 1 or _uses_tools(messages[0]):
        raise RecordError("vertex.preference_output", f"{key} must be one text-only assistant message")
    _dropped_keys(messages[0], changes)
    return {"role": "model", "parts": _parts(messages[0].get("content"), changes)}


def to_vertex_preference(record: Record) -> tuple[Record, list[str]]:
    """One canonical preference pair as a Vertex preference line, and the keys of what changed."""
    if not isinstance(record.get("input"), dict):
        raise RecordError("dpo.malformed")
    changes = ["vertex.role_renamed"]  # the completions are `model` turns
    system: list[Record] = []
    contents: list[Record] = []
    for m in _messages(_prompt(record).get("messages")):
        role = m.get("role")
        _dropped_keys(m, changes)
        if _uses_tools(m):
            changes.append("vertex.preference_tools_dropped")
        if role in _TOOL_ROLES:
            continue
        parts = _parts(m.get("content"), changes)
        if role == "system" and not contents:
            system += parts
            continue
        if role == "system":
            changes.append("vertex.system_moved")
        if parts:  # an assistant turn that only called tools has nothing left
            contents.append({"role": "model" if role == "assistant" else "user", "parts": parts})
    out: Record = {}
    if system:
        out["system_instruction"] = {"parts": system}
        changes.append("vertex.preference_system_instruction")
    out["contents"] = contents
    out["completions"] = [
        {"score": score, "completion": _completion(record.get(key), key, changes)} for key, score in OUTPUTS
    ]
    if _prompt(record).get("tools"):
        changes.append("vertex.preference_tools_dropped")
    if _extra_fields(record):
        changes.append("vertex.preference_fields_dropped")
    return out, changes


def _text_parts(turn: Any) -> list[Record] | None:
    """The parts of a turn made only of text parts, else None."""
    parts = turn.get("parts") if isinstance(turn, dict) else None
    if not isinstance(parts, list):
        return None
    texts = all(isinstance(p, dict) and set(p) == {"text"} and isinstance(p["text"], str) for p in parts)
    return parts if texts else None


def _completion_text(entry: Record, i: int) -> str:
    turn = entry.get("completion")
    parts = _text_parts(turn)
    if parts is None or not isinstance(turn, dict) or turn.get("role", "model") != "model":
        raise RecordError("vertex.preference_completions", f"completions[{i}].completion is not a text model turn")
    return "".join(p["text"] for p in parts)


_LINE = frozenset({"contents", "system_instruction", "systemInstruction", "completions"})
_COMPLETION = frozenset({"score", "completion"})


def from_vertex_preference(record: Record) -> Imported:
    """A Vertex preference line as a canonical preference pair (OpenAI's DPO shape)."""
    system = record.get("system_instruction", record.get("systemInstruction"))
    if system is not None and _text_parts(system) is None:
        raise RecordError("vertex.preference_text_only", "system_instruction is not a list of text parts")
    contents = record.get("contents")
    if not isinstance(contents, list) or not contents:
        raise RecordError("missing_messages_list", "'contents' is missing, empty or not a list")
    for i, turn in enumerate(contents):
        if _text_parts(turn) is None:
            raise RecordError("vertex.preference_text_only", f"contents[{i}] is not a turn of text parts")
    prompt, changes = from_vertex({"contents": contents, "systemInstruction": system})
    changes += dropped(record, _LINE)
    completions = record.get("completions")
    entries = completions if isinstance(completions, list) and all(isinstance(c, dict) for c in completions) else []
    scores = [c.get("score") for c in entries]
    if len(scores) != 2 or any(type(s) is not int for s in scores) or set(scores) != {0, 1}:  # bool is not a score
        raise RecordError("vertex.preference_completions", f"'completions' has scores {scores}; it needs 1 and 0")
    texts = {entry["score"]: _completion_text(entry, i) for i, entry in enumerate(entries)}
    for entry in entries:
        changes += dropped(entry, _COMPLETION, "completions[].") + dropped(
            entry["completion"], TURN_FIELDS, "completions[].completion."
        )
    pair = {"input": prompt, **{key: [{"role": "assistant", "content": texts[score]}] for key, score in OUTPUTS}}
    return pair, changes
