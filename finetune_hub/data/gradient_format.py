"""Gradient fine-tuning samples, both ways (the platform closed in 2024; kept for old exports).

A sample is `{"inputs": [{"value": ..., "trainable": bool}, ...]}` (the wire form of
`POST /models/{id}/fine-tune`). Each message becomes a header segment (never trained) and a content segment,
trained only for assistant turns whose weight is not 0, so the importer can read the turns back.
"""

from __future__ import annotations

import re
from typing import Any

from finetune_hub.data.findings import RecordError
from finetune_hub.data.importers import Imported, dropped

Record = dict[str, Any]
_HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}
_ROLE_OF = {header.strip(): role for role, header in _HEADERS.items()}
_HEADER = re.compile(r"^(?:\n\n)?(### (?:System|User|Assistant):)\n$")


def to_gradient(record: Record) -> tuple[Record, list[str]]:
    if "messages" not in record:
        raise RecordError("platform.unsupported_format", "Gradient samples take chat examples only")
    changes: list[str] = []
    segments: list[Record] = []
    for message in record["messages"]:
        role, content = message.get("role"), message.get("content")
        if role not in _HEADERS or message.get("tool_calls"):
            changes.append("gradient.tools_dropped")
            continue
        if "name" in message:
            changes.append("gradient.name_dropped")
        if not isinstance(content, str):
            changes.append("gradient.parts_flattened")
            content = "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))
        header = ("\n\n" if segments else "") + _HEADERS[role]
        trainable = role == "assistant" and message.get("weight", 1) != 0
        segments += [{"value": header, "trainable": False}, {"value": content, "trainable": trainable}]
    if record.get("tools"):
        changes.append("gradient.tools_dropped")
    return {"inputs": segments}, changes


_SEGMENT = frozenset({"value", "trainable"})


def from_gradient(record: Record) -> Imported:
    inputs = record.get("inputs")
    changes = dropped(record, frozenset({"inputs"}))
    if isinstance(inputs, str):  # a rendered template string: one user→assistant pair if it has the markers
        head, sep, tail = inputs.partition("### Response:")
        if not sep:
            raise RecordError("format.unknown", "a Gradient 'inputs' string without '### Response:'")
        prompt = head.replace("### Instruction:", "", 1).strip()
        turns = [{"role": "user", "content": prompt}, {"role": "assistant", "content": tail.strip()}]
        return {"messages": turns}, changes
    if not isinstance(inputs, list) or len(inputs) % 2:
        raise RecordError("missing_messages_list", "'inputs' must be header/content segment pairs")
    messages: list[Record] = []
    for header, body in zip(inputs[::2], inputs[1::2], strict=True):
        match = _HEADER.match(header.get("value", "")) if isinstance(header, dict) else None
        if not match or not isinstance(body, dict):
            raise RecordError("format.unknown", "a Gradient segment pair without a '### Role:' header")
        message: Record = {"role": _ROLE_OF[match.group(1)], "content": body.get("value", "")}
        if message["role"] == "assistant" and not body.get("trainable", True):
            message["weight"] = 0
        messages.append(message)
        changes += dropped(header, _SEGMENT, "inputs[].") + dropped(body, _SEGMENT, "inputs[].")
    return {"messages": messages}, changes
