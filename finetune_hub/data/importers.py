"""Importers: every user format to the canonical record.

Canonical records are plain dicts, one of three kinds:
- chat: the OpenAI chat superset {"messages": [...], "tools"?, "parallel_tool_calls"?} with `name`, `weight`,
  `tool_calls`, `tool` turns and multimodal content parts;
- preference: the OpenAI DPO shape {"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]};
- text: {"text": "..."} (continued pre-training; local targets only).

Each importer returns the record and the keys of what it could not carry over (see exporters.CHANGES), so a
conversion report names import losses the same way it names export losses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from finetune_hub.data.findings import RecordError

Record = dict[str, Any]
Imported = tuple[Record, list[str]]
DROPPED = "source.field_dropped"  # + ":<field path>"


def dropped(record: Record, known: frozenset[str], where: str = "") -> list[str]:
    """A change key for each field of `record` that is not in `known` (so nothing is lost without a word)."""
    return [f"{DROPPED}:{where}{key}" for key in record if key not in known]


def kind_of(record: Record) -> str:
    if "messages" in record:
        return "chat"
    if "input" in record:
        return "preference"
    return "text" if "text" in record else "chat"  # a record with neither is a chat example missing its messages


def _text(record: Record, key: str, *, required: bool = True) -> str:
    value = record.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        kind = "missing" if value is None else f"a {type(value).__name__}, not text"
        raise RecordError("missing_content", f"'{key}' is {kind}")
    return value


def _user_turns(system: str, turns: list[tuple[str, str]]) -> Record:
    messages: list[Record] = [{"role": "system", "content": system}] if system else []
    for user, assistant in turns:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return {"messages": messages}


_ALPACA = frozenset({"instruction", "input", "output", "system", "history"})
_JUMPSTART = frozenset({"instruction", "context", "response"})
_PROMPT_COMPLETION = frozenset({"prompt", "completion", "system"})
_TEXT = frozenset({"text"})
_SHAREGPT = frozenset({"conversations", "system", "tools"})
_SHAREGPT_TURN = frozenset({"from", "value"})
_TRL = frozenset({"prompt", "chosen", "rejected", "tools"})


def from_alpaca(record: Record) -> Imported:
    instruction, extra = _text(record, "instruction"), _text(record, "input", required=False)
    history = record.get("history") or []
    if not isinstance(history, list) or not all(isinstance(h, list) and len(h) == 2 for h in history):
        raise RecordError("missing_content", "'history' must be a list of [question, answer] pairs")
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    turns = [(str(q), str(a)) for q, a in history] + [(prompt, _text(record, "output"))]
    return _user_turns(_text(record, "system", required=False), turns), dropped(record, _ALPACA)


def from_jumpstart(record: Record) -> Imported:
    instruction, context = _text(record, "instruction"), _text(record, "context", required=False)
    prompt = f"{instruction}\n\n{context}" if context else instruction
    return _user_turns("", [(prompt, _text(record, "response"))]), dropped(record, _JUMPSTART)


def from_prompt_completion(record: Record) -> Imported:
    turns = [(_text(record, "prompt"), _text(record, "completion"))]
    return _user_turns(_text(record, "system", required=False), turns), dropped(record, _PROMPT_COMPLETION)


def from_text(record: Record) -> Imported:
    return {"text": _text(record, "text")}, dropped(record, _TEXT)


_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


def from_sharegpt(record: Record) -> Imported:
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RecordError("missing_messages_list", "'conversations' is missing, empty or not a list")
    messages: list[Record] = []
    changes = dropped(record, _SHAREGPT)
    if isinstance(record.get("system"), str) and record["system"]:
        messages.append({"role": "system", "content": record["system"]})
    last_call: str | None = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RecordError("message_missing_key", f"conversations[{i}] needs 'from' and 'value'")
        source, value = turn["from"], turn["value"]
        changes += dropped(turn, _SHAREGPT_TURN, "conversations[].")
        if source == "function_call":  # LLaMA-Factory: value is {"name", "arguments"} as JSON
            try:
                call = json.loads(value) if isinstance(value, str) else value
                name, args = call["name"], call.get("arguments", {})
            except (json.JSONDecodeError, TypeError, KeyError):
                raise RecordError(
                    "tool_call_malformed", f"conversations[{i}]: function_call value is not JSON"
                ) from None
            last_call = f"call_{i}"
            arguments = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
            tool_call = {"id": last_call, "type": "function", "function": {"name": name, "arguments": arguments}}
            messages.append({"role": "assistant", "tool_calls": [tool_call]})
        elif source == "observation":
            messages.append({"role": "tool", "tool_call_id": last_call or f"call_{i}", "content": value})
        elif source in _SHAREGPT_ROLES:
            messages.append({"role": _SHAREGPT_ROLES[source], "content": value})
        else:
            raise RecordError("unrecognized_role", f"conversations[{i}]: unknown 'from' value {source!r}")
    out: Record = {"messages": messages}
    tools = record.get("tools")
    if isinstance(tools, str) and tools.strip():
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError:
            raise RecordError("tools_type", "'tools' is a string that is not JSON") from None
    if tools:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise RecordError("tools_type", f"'tools' is {type(tools).__name__}, not a list of function definitions")
        out["tools"] = [t if "function" in t else {"type": "function", "function": t} for t in tools]
    return out, changes


_HF_CHAT = frozenset({"conversations", "system", "tools", "functions", "parallel_tool_calls"})


def from_hf_chat(record: Record) -> Imported:
    """`conversations` holding OpenAI-style messages; a `system` field becomes the first message, as in ShareGPT."""
    messages, system = record["conversations"], record.get("system")
    first = messages[0] if isinstance(messages, list) and messages else None
    has_own = isinstance(first, dict) and first.get("role") == "system"  # then the field is not used (reported)
    if isinstance(system, str) and system and isinstance(messages, list) and not has_own:
        messages = [{"role": "system", "content": system}, *messages]
    out: Record = {"messages": messages}
    out.update((k, record[k]) for k in ("tools", "functions", "parallel_tool_calls") if k in record)
    return out, dropped(record, _HF_CHAT - {"system"} if has_own else _HF_CHAT)


def _as_messages(value: Any, role: str) -> list[Record]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return value
    raise RecordError("dpo.malformed", f"expected a string or a list of messages, got {type(value).__name__}")


def from_trl_preference(record: Record) -> Imported:
    prompt = record.get("prompt")
    chosen, rejected = record["chosen"], record["rejected"]
    if prompt is None and isinstance(chosen, list):  # implicit prompt: shared leading turns
        n = len(chosen) - 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:] if isinstance(rejected, list) else rejected
    out: Record = {
        "input": {"messages": _as_messages(prompt, "user")},
        "preferred_output": _as_messages(chosen, "assistant"),
        "non_preferred_output": _as_messages(rejected, "assistant"),
    }
    if record.get("tools"):
        out["input"]["tools"] = record["tools"]
    return out, dropped(record, _TRL)


def identity(record: Record) -> Imported:
    return record, []


def importer_for(fmt: str) -> Callable[[Record], Imported]:
    from finetune_hub.data import gradient_format, vertex_format, vertex_preference

    table: dict[str, Callable[[Record], Imported]] = {
        "openai_chat": identity,
        "openai_dpo": identity,
        "alpaca": from_alpaca,
        "jumpstart": from_jumpstart,
        "prompt_completion": from_prompt_completion,
        "text": from_text,
        "sharegpt": from_sharegpt,
        "hf_chat": from_hf_chat,
        "trl_preference": from_trl_preference,
        "vertex": vertex_format.from_vertex,
        "vertex_preference": vertex_preference.from_vertex_preference,
        "gradient": gradient_format.from_gradient,
    }
    return table[fmt]
