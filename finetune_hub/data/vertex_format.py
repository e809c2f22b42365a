"""Vertex Gemini tuning records, both ways: canonical chat ⇄ `contents` / `systemInstruction` / `tools`.

Follows Google's "Prepare supervised fine-tuning data" page and Kiln's vertex_formatter: assistant → `model`,
leading system turns → `systemInstruction`, tool calls → `functionCall` parts, tool answers grouped into one
user turn of `functionResponse` parts, `tools` → `functionDeclarations` with upper-case schema types.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from finetune_hub.data.findings import RecordError

Record = dict[str, Any]
_TYPES = ("string", "integer", "boolean", "number", "array", "object")


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


def _user_parts(content: Any, changes: list[str]) -> list[Record]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[Record] = []
    for part in content or []:
        if part.get("type") == "text":
            parts.append({"text": part.get("text", "")})
        elif part.get("type") == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            if url.startswith("gs://"):
                mime = mimetypes.guess_type(url)[0] or "image/jpeg"
                parts.append({"fileData": {"mimeType": mime, "fileUri": url}})
            else:
                changes.append("vertex.image_dropped")
        else:
            changes.append("vertex.part_dropped")
    return parts


def to_vertex(record: Record) -> tuple[Record, list[str]]:
    """One canonical chat record as a Vertex tuning line, and the keys of what changed (see CHANGES)."""
    if "messages" not in record:
        raise RecordError("platform.unsupported_format", "Vertex supervised tuning takes chat examples only")
    changes: list[str] = []
    system: list[Record] = []
    contents: list[Record] = []
    responses: list[Record] = []
    call_names: dict[str, str] = {}
    for message in record["messages"]:
        role, content = message.get("role"), message.get("content")
        if "name" in message:
            changes.append("vertex.name_dropped")
        if "weight" in message:
            changes.append("vertex.weight_dropped")
        if role == "tool":
            name = call_names.get(message.get("tool_call_id", ""), "")
            responses.append({"functionResponse": {"name": name, "response": {"content": content}}})
            continue
        if responses:
            contents.append({"role": "user", "parts": responses})
            responses = []
        if role == "system":
            if contents:
                changes.append("vertex.system_moved")
                contents.append({"role": "user", "parts": [{"text": content}]})
            else:
                system.append({"text": content})
        elif role == "user":
            contents.append({"role": "user", "parts": _user_parts(content, changes)})
        else:
            parts: list[Record] = [{"text": content}] if isinstance(content, str) and content else []
            for call in message.get("tool_calls") or []:
                fn = call.get("function", {})
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    raise RecordError("tool_call_arguments_json") from None
                call_names[call.get("id", "")] = fn.get("name", "")
                parts.append({"functionCall": {"name": fn.get("name", ""), "args": args}})
            if message.get("tool_calls"):
                changes.append("vertex.tool_call_ids")
            contents.append({"role": "model", "parts": parts})
    if responses:
        contents.append({"role": "user", "parts": responses})
    out: Record = {}
    if system:
        out["systemInstruction"] = {"role": "system", "parts": system}
    out["contents"] = contents
    if record.get("tools"):
        declarations = []
        for tool in record["tools"]:
            fn = dict(tool.get("function", {}))
            if "parameters" in fn:
                fn["parameters"] = _schema(fn["parameters"], upper=True)
            declarations.append(fn)
        out["tools"] = [{"functionDeclarations": declarations}]
        changes.append("vertex.schema_types")
    if "parallel_tool_calls" in record:
        changes.append("vertex.parallel_tool_calls_dropped")
    return out, changes


def _text_of(parts: list[Record]) -> str:
    return "".join(p["text"] for p in parts if "text" in p)


def from_vertex(record: Record) -> Record:
    """A Vertex tuning line as a canonical chat record (tool call ids are generated: call_1, call_2, ...)."""
    contents = record.get("contents")
    if not isinstance(contents, list) or not contents:
        raise RecordError("missing_messages_list", "'contents' is missing, empty or not a list")
    messages: list[Record] = []
    for part in (record.get("systemInstruction") or {}).get("parts", []):
        messages.append({"role": "system", "content": part.get("text", "")})
    open_calls: list[tuple[str, str]] = []  # (id, name) not answered yet, in call order
    n_calls = 0
    for i, turn in enumerate(contents):
        if not isinstance(turn, dict) or not isinstance(turn.get("parts"), list):
            raise RecordError("message_missing_key", f"contents[{i}] needs 'role' and a 'parts' list")
        parts, role = turn["parts"], turn.get("role", "user")
        if any("functionResponse" in p for p in parts):
            for p in parts:
                answer = p.get("functionResponse") or {}
                name = answer.get("name", "")
                match = next((c for c in open_calls if c[1] == name), open_calls[0] if open_calls else None)
                if match:
                    open_calls.remove(match)
                response = answer.get("response", {})
                is_plain = isinstance(response, dict) and set(response) == {"content"}
                content = response["content"] if is_plain else json.dumps(response, ensure_ascii=False)
                messages.append({"role": "tool", "tool_call_id": match[0] if match else "", "content": content})
        elif role == "model":
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
    out: Record = {"messages": messages}
    for group in record.get("tools") or []:
        for fn in group.get("functionDeclarations", []):
            fn = dict(fn)
            if "parameters" in fn:
                fn["parameters"] = _schema(fn["parameters"], upper=False)
            out.setdefault("tools", []).append({"type": "function", "function": fn})
    return out
