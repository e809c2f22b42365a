"""Vertex Gemini tuning records, both ways: canonical chat ⇄ `contents` / `systemInstruction` / `tools`.

Follows Google's "Prepare supervised fine-tuning data" page and Kiln's vertex_formatter: assistant → `model`,
leading system turns → `systemInstruction`, tool calls → `functionCall` parts, tool answers grouped into one
user turn of `functionResponse` parts, `tools` → `functionDeclarations` with upper-case schema types.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from finetune_hub.data.findings import RecordError
from finetune_hub.data.importers import Imported, dropped

Record = dict[str, Any]
_TYPES = ("string", "integer", "boolean", "number", "array", "object")
CHAT_FIELDS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})  # what a chat record may hold


def _schema(value: Any, upper: bool) -> Any:
    """JSON-schema types upper-cased for Vertex (or back); everything else as is."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "type" and isinstance(item, str) and item.lower() in _TYPES:
                out[key] = item.upper() if upper else item.lower()
            else:
                out[key] = _schema(item, upper)
        return out
    if isinstance(value, list):
        return [_schema(item, upper) for item in value]
    return value


def _parts(content: Any, changes: list[str], *, images: bool) -> list[Record]:
    """A message's content as Vertex parts: text parts always; gs:// images only where `images` (user turns)."""
    if isinstance(content, str):
        return [{"text": content}] if content else []
    parts: list[Record] = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if not images:
                changes.append("vertex.non_user_image_dropped")
            elif url.startswith("gs://"):
                mime = mimetypes.guess_type(url)[0] or "image/jpeg"
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
            else:
                changes.append("vertex.image_dropped")
        else:
            changes.append("vertex.part_dropped")
    return parts


def lost_fields(message: Record) -> list[str]:
    """The message fields a Vertex line has no place for (a legacy function message's `name` is the function's,
    carried in its functionResponse). The exporter reports them, the Vertex rule pack warns of them."""
    return [
        key
        for key in ("name", "weight")
        if key in message and not (key == "name" and message.get("role") == "function")
    ]


def warned_losses(messages: list[Record]) -> list[str]:
    """The lost fields worth a warning, once each: a weight of 1 is what Vertex does anyway."""
    return sorted({key for m in messages for key in lost_fields(m) if m.get(key) != 1})


def to_vertex(record: Record) -> tuple[Record, list[str]]:
    """One canonical chat record as a Vertex tuning line, and the keys of what changed (see CHANGES)."""
    if "messages" not in record:
        raise RecordError("platform.unsupported_format", "Vertex supervised tuning takes chat examples only")
    changes: list[str] = []
    system: list[Record] = []
    contents: list[Record] = []
    responses: list[tuple[int, Record]] = []  # (the answered call's place in its turn, the part)
    call_names: dict[str, str] = {}
    call_order: dict[str, int] = {}  # the latest model turn's calls: Vertex pairs answers by name and order
    for message in record["messages"]:
        role, content = message.get("role"), message.get("content")
        changes += [f"vertex.{key}_dropped" for key in lost_fields(message)]
        if role in ("tool", "function"):
            if role == "function":
                name = str(message.get("name", ""))
                changes.append("vertex.legacy_functions")
            else:
                name = call_names.get(message.get("tool_call_id", ""), "")
            place = call_order.get(message.get("tool_call_id", ""), len(call_order))
            responses.append((place, {"functionResponse": {"name": name, "response": {"content": content}}}))
            continue
        if responses:
            contents.append({"role": "user", "parts": _in_call_order(responses)})
            responses = []
        if role == "system":
            parts = _parts(content, changes, images=False)  # systemInstruction holds text only
            if contents:
                changes.append("vertex.system_moved")
                contents.append({"role": "user", "parts": parts})
            else:
                system += parts
        elif role == "user":
            contents.append({"role": "user", "parts": _parts(content, changes, images=True)})
        else:
            parts = _parts(content, changes, images=False)
            calls = [(call.get("id", ""), call.get("function", {})) for call in message.get("tool_calls") or []]
            if isinstance(message.get("function_call"), dict):
                calls.append(("", message["function_call"]))
                changes.append("vertex.legacy_functions")
            call_order = {call_id: k for k, (call_id, _) in enumerate(calls)}
            for call_id, fn in calls:
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    raise RecordError("tool_call_arguments_json") from None
                call_names[call_id] = fn.get("name", "")
                parts.append({"functionCall": {"name": fn.get("name", ""), "args": args}})
            if message.get("tool_calls"):
                changes.append("vertex.tool_call_ids")
            contents.append({"role": "model", "parts": parts})
    if responses:
        contents.append({"role": "user", "parts": _in_call_order(responses)})
    out: Record = {}
    if system:
        out["systemInstruction"] = {"role": "system", "parts": system}
        changes.append("vertex.system_instruction")
    out["contents"] = contents
    if any(turn["role"] == "model" for turn in contents):
        changes.append("vertex.role_renamed")
    tools, legacy = record.get("tools") or [], record.get("functions") or []
    if not isinstance(tools, list) or not isinstance(legacy, list):
        raise RecordError("tools_type")
    functions = [tool.get("function", {}) if isinstance(tool, dict) else tool for tool in tools] + legacy
    if not all(isinstance(fn, dict) for fn in functions):
        raise RecordError("tools_type")
    if functions:  # `functions`: the legacy spelling of tools
        declarations = []
        for fn in map(dict, functions):
            if "parameters" in fn:
                fn["parameters"] = _schema(fn["parameters"], upper=True)
            declarations.append(fn)
        out["tools"] = [{"functionDeclarations": declarations}]
        changes.append("vertex.schema_types")
    if "parallel_tool_calls" in record:
        changes.append("vertex.parallel_tool_calls_dropped")
    if not CHAT_FIELDS.issuperset(record):
        changes.append("vertex.fields_dropped")
    return out, changes


def _in_call_order(responses: list[tuple[int, Record]]) -> list[Record]:
    return [part for _, part in sorted(responses, key=lambda r: r[0])]  # stable: answers to unknown calls keep theirs


def _text_of(parts: list[Record]) -> str:
    return "".join(p["text"] for p in parts if "text" in p)


#: the part kinds a Vertex line may hold → (is this value well formed, what it should look like)
_PART_KINDS: MappingProxyType[str, tuple[Callable[[Any], bool], str]] = MappingProxyType(
    {
        "text": (lambda v: isinstance(v, str), "a string"),
        "fileData": (
            lambda v: isinstance(v, dict) and isinstance(v.get("fileUri"), str),
            "{'mimeType': ..., 'fileUri': 'gs://...'}",
        ),
        "functionCall": (
            lambda v: isinstance(v, dict) and isinstance(v.get("name"), str),
            "{'name': ..., 'args': {...}}",
        ),
        "functionResponse": (
            lambda v: isinstance(v, dict) and isinstance(v.get("name", ""), str),
            "{'name': ..., 'response': {...}}",
        ),
    }
)


def _check_parts(parts: list[Any], where: str, turn: str, allowed: tuple[str, ...]) -> list[Record]:
    """`parts` when each is one well-formed part of a kind in `allowed`; else a `vertex.part_malformed` RecordError
    (so a malformed line is a finding at its line, and nothing is dropped without a word)."""
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise RecordError("vertex.part_malformed", f"{at} is {json.dumps(part, default=str)[:40]}, not an object")
        kinds = [kind for kind in _PART_KINDS if kind in part]
        if len(kinds) != 1:
            held = ", ".join(kinds or sorted(map(str, part))) or "nothing"
            raise RecordError(
                "vertex.part_malformed", f"{at} holds {held}; a part holds one of {', '.join(_PART_KINDS)}"
            )
        well_formed, shape = _PART_KINDS[kinds[0]]
        if not well_formed(part[kinds[0]]):
            raise RecordError("vertex.part_malformed", f"{at}: '{kinds[0]}' must be {shape}")
        if kinds[0] not in allowed:
            raise RecordError(
                "vertex.part_malformed", f"{at} is a {kinds[0]} part; {turn} holds {' or '.join(allowed)}"
            )
    return parts


def _check_tools(tools: Any) -> list[Record]:
    groups = tools if isinstance(tools, list) else None
    if groups is None or not all(
        isinstance(group, dict)
        and isinstance(group.get("functionDeclarations", []), list)
        and all(isinstance(fn, dict) for fn in group.get("functionDeclarations", []))
        for group in groups
    ):
        raise RecordError("tools_type", "'tools' must be [{'functionDeclarations': [{'name': ..., ...}]}]")
    return groups


_LINE = frozenset({"contents", "systemInstruction", "system_instruction", "tools"})
TURN_FIELDS = frozenset({"role", "parts"})  # what a Vertex turn holds
_PART_FIELDS = MappingProxyType(  # what the canonical record keeps of each kind of part
    {
        "text": frozenset({"text"}),
        "fileData": frozenset({"fileUri"}),  # the MIME type is guessed back from the URI on export
        "functionCall": frozenset({"name", "args"}),
        "functionResponse": frozenset({"name", "response"}),
    }
)


def _part_losses(parts: list[Record], where: str) -> list[str]:
    changes: list[str] = []
    for part in parts:
        kind = next(k for k in _PART_FIELDS if k in part)  # _check_parts made sure there is one
        changes += dropped(part, frozenset({kind}), f"{where}.parts[].")
        if isinstance(part[kind], dict):
            changes += dropped(part[kind], _PART_FIELDS[kind], f"{where}.parts[].{kind}.")
    return changes


def from_vertex(record: Record) -> Imported:
    """A Vertex tuning line as a canonical chat record (tool call ids are generated: call_1, call_2, ...).
    Both spellings of the system instruction are read (the REST API accepts either)."""
    contents = record.get("contents")
    if not isinstance(contents, list) or not contents:
        raise RecordError("missing_messages_list", "'contents' is missing, empty or not a list")
    messages: list[Record] = []
    changes = dropped(record, _LINE)
    system = record.get("systemInstruction", record.get("system_instruction")) or {}
    if not isinstance(system, dict) or not isinstance(system.get("parts", []), list):
        raise RecordError("vertex.part_malformed", "'systemInstruction' must be {'parts': [{'text': ...}]}")
    for part in _check_parts(system.get("parts", []), "systemInstruction", "a system instruction", ("text",)):
        messages.append({"role": "system", "content": part["text"]})
    changes += dropped(system, TURN_FIELDS, "systemInstruction.") + _part_losses(
        system.get("parts", []), "systemInstruction"
    )
    open_calls: list[tuple[str, str]] = []  # (id, name) not answered yet, in call order
    n_calls = 0
    for i, turn in enumerate(contents):
        if not isinstance(turn, dict) or not isinstance(turn.get("parts"), list):
            raise RecordError("message_missing_key", f"contents[{i}] needs 'role' and a 'parts' list")
        parts, role, where = turn["parts"], turn.get("role", "user"), f"contents[{i}]"
        changes += dropped(turn, TURN_FIELDS, "contents[].")
        if any(isinstance(p, dict) and "functionResponse" in p for p in parts):
            for p in _check_parts(parts, where, "a turn of tool answers", ("functionResponse",)):
                answer = p["functionResponse"]
                name = answer.get("name", "")
                match = next((c for c in open_calls if c[1] == name), open_calls[0] if open_calls else None)
                if match:
                    open_calls.remove(match)
                response = answer.get("response", {})
                is_plain = isinstance(response, dict) and set(response) == {"content"}
                content = response["content"] if is_plain else json.dumps(response, ensure_ascii=False)
                messages.append({"role": "tool", "tool_call_id": match[0] if match else "", "content": content})
        elif role == "model":
            _check_parts(parts, where, "a model turn", ("text", "functionCall"))
            message: Record = {"role": "assistant"}
            if any("text" in p for p in parts) or not any("functionCall" in p for p in parts):
                message["content"] = _text_of(parts)
            calls = []
            for p in parts:
                if "functionCall" in p:
                    n_calls += 1
                    fc = p["functionCall"]
                    call_id = f"call_{n_calls}"
                    open_calls.append((call_id, fc.get("name", "")))
                    arguments = json.dumps(fc.get("args", {}), ensure_ascii=False)
                    calls.append(
                        {
                            "id": call_id,
                            "type": "function",
                            "function": {"name": fc.get("name", ""), "arguments": arguments},
                        }
                    )
            if calls:
                message["tool_calls"] = calls
            messages.append(message)
        elif role == "user":
            _check_parts(parts, where, "a user turn", ("text", "fileData"))
            if all("text" in p for p in parts):
                messages.append({"role": "user", "content": _text_of(parts)})
            else:
                content = []
                for p in parts:
                    if "text" in p:
                        content.append({"type": "text", "text": p["text"]})
                    elif "fileData" in p:
                        content.append({"type": "image_url", "image_url": {"url": p["fileData"].get("fileUri", "")}})
                messages.append({"role": "user", "content": content})
        else:
            raise RecordError("unrecognized_role", f"contents[{i}]: role {role!r} (Vertex uses 'user' and 'model')")
        changes += _part_losses(parts, "contents[]")
    if n_calls:
        changes.append("source.tool_call_ids_generated")
    out: Record = {"messages": messages}
    for group in _check_tools(record.get("tools") or []):
        changes += dropped(group, frozenset({"functionDeclarations"}), "tools[].")
        for fn in group.get("functionDeclarations", []):
            fn = dict(fn)
            if "parameters" in fn:
                fn["parameters"] = _schema(fn["parameters"], upper=False)
            out.setdefault("tools", []).append({"type": "function", "function": fn})
    return out, changes
