"""Dataset formats: their names, how a record is recognised, and how a file's format is detected."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_hub.data.findings import RecordError

# format name → what a user would call it
FORMATS: dict[str, str] = {
    "openai_chat": "OpenAI chat JSONL ({'messages': [...]})",
    "openai_dpo": "OpenAI DPO preference pairs ({'input', 'preferred_output', 'non_preferred_output'})",
    "trl_preference": "TRL preference pairs ({'prompt', 'chosen', 'rejected'})",
    "sharegpt": "ShareGPT ({'conversations': [{'from', 'value'}]})",
    "hf_chat": "Hugging Face chat-template ({'conversations': [{'role', 'content'}]})",
    "alpaca": "Alpaca ({'instruction', 'input', 'output'})",
    "jumpstart": "SageMaker JumpStart instruction ({'instruction', 'context', 'response'})",
    "prompt_completion": "prompt/completion ({'prompt', 'completion'})",
    "text": "plain text ({'text'})",
    "vertex": "Vertex Gemini ({'contents': [...], 'systemInstruction'})",
    "vertex_preference": "Vertex Gemini preference pairs ({'contents', 'completions', 'system_instruction'})",
    "gradient": "Gradient samples ({'inputs'})",
}
PREFERENCE_FORMATS = frozenset({"openai_dpo", "trl_preference", "vertex_preference"})


def classify(record: Any) -> str | None:
    """The format one record is in, from its keys; None when it matches none."""
    if not isinstance(record, dict):
        return None
    keys = record.keys()
    if "messages" in keys:
        return "openai_chat"
    if "input" in keys and ("preferred_output" in keys or "non_preferred_output" in keys):
        return "openai_dpo"
    if "chosen" in keys and "rejected" in keys:
        return "trl_preference"
    if "contents" in keys:
        return "vertex_preference" if "completions" in keys else "vertex"
    if "conversations" in keys:
        turns = record["conversations"]
        first = turns[0] if isinstance(turns, list) and turns else None
        return "sharegpt" if isinstance(first, dict) and "from" in first else "hf_chat"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "instruction" in keys and "response" in keys:
        return "jumpstart"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    if "inputs" in keys:
        return "gradient"
    if "text" in keys:
        return "text"
    return None


@dataclass(frozen=True)
class Detection:
    container: str  # jsonl | json | csv | tsv | parquet | hf_dataset | txt
    format: str  # a key of FORMATS
    reason: str  # said to the user: what was seen and what it was taken for
    assumed: bool = False  # no record could be read: the format is a default, not a finding

    def describe(self) -> str:
        return f"{FORMATS.get(self.format, self.format)} in a {self.container} file: {self.reason}"


def container_of(path: Path) -> tuple[str, str]:
    """(container, why) from the path and the first bytes; never reads the whole file."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "hf_dataset", "a Hugging Face `datasets` directory (save_to_disk)"
        return "hf_dataset", "a directory (read as a Hugging Face `datasets` directory)"
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet", f"the '{suffix}' extension"
    if suffix in (".csv", ".tsv"):
        return suffix[1:], f"the '{suffix}' extension"
    if suffix == ".txt":
        return "txt", "the '.txt' extension (one example per line)"
    with open(path, "rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"["):
        return "json", "the file starts with '[' (a JSON array of examples)"
    return "jsonl", "one JSON object per line"


def parse_mapping(spec: str | dict[str, str] | None) -> dict[str, str]:
    """`--columns prompt=question,completion=answer` → {'prompt': 'question', 'completion': 'answer'}."""
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return dict(spec)
    pairs = [item.split("=", 1) for item in spec.split(",") if item.strip()]
    if not pairs or any(len(p) != 2 or not p[0].strip() or not p[1].strip() for p in pairs):
        from finetune_hub.errors import DataError

        raise DataError(
            f"--columns {spec!r}: expected FIELD=COLUMN pairs", hint="e.g. prompt=question,completion=answer"
        )
    return {k.strip(): v.strip() for k, v in pairs}


#: the keys `classify` tells formats apart by
_FORMAT_KEYS = frozenset({"messages", "input", "preferred_output", "non_preferred_output", "chosen", "rejected",
                          "contents", "completions", "conversations", "instruction", "output", "response", "prompt",
                          "completion", "inputs", "text"})  # fmt: skip
#: fields that hold lists or objects in every format; a table cell gives them as JSON text
_NESTED = ("messages", "conversations", "tools", "contents", "completions", "preferred_output", "non_preferred_output")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \ud800-\udfff escape (or text that looks like one)


def _refuse_constant(name: str) -> Any:
    raise RecordError("json.invalid", f"{name} is not JSON (write null, a number or a string)")


def _finite(text: str) -> float:
    if math.isinf(value := float(text)):
        raise RecordError("json.invalid", f"{text[:20]} is too large for a number (it would be read as infinity)")
    return value


#: a JSON decoder for JSON only: Python's also reads NaN and ±Infinity, and 1e999 as infinity, which no other
#: JSON reader need accept (and json.dumps writes back as Infinity, which is not JSON): those raise RecordError.
#: It keeps no state between calls, so one serves every call (building one costs as much as a small decode).
STRICT_JSON = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite)


def loads(text: str) -> Any:
    """`json.loads` of JSON only (see `STRICT_JSON`); a lone surrogate escape raises RecordError too."""
    value = STRICT_JSON.decode(text)
    refuse_lone_surrogates(value, text)
    return value


def refuse_lone_surrogates(value: Any, text: str, start: int = 0, end: int = sys.maxsize) -> None:
    """Raise `encoding.lone_surrogate` when a string of `value` holds a lone surrogate. `value` was read from
    text[start:end], and is walked only when that holds a \\ud800-\\udfff escape (rare)."""
    if not _SURROGATE_ESCAPE.search(text, start, end):
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        message = f"a string holds \\u{ord(exc.object[exc.start]):04x} without its pair"
        raise RecordError("encoding.lone_surrogate", message) from None


def _json_text(value: Any) -> Any:
    """The list or object `value` holds as JSON text; None for anything else (plain text, or not JSON after all)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return loads(value)
        except (ValueError, RecordError):  # kept as text; the field's own checks then report it
            return None
    return None


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def mapped(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """A table row with the mapped columns renamed to canonical field names and the other columns kept (the
    importer names those it drops). CSV cannot hold nested values, so JSON text is parsed where a field holds
    structured data: the list fields, a DPO pair's `input`, and a TRL pair's prompt/chosen/rejected when it is a
    message list (they may also be plain text, which may itself look like JSON; so may alpaca's `input`)."""
    if mapping:
        # Unmapped columns are kept (a `system` column stays a system prompt), except those that would make the
        # row look like another format: the mapping is how a user picks one format out of a wide table.
        sources = set(mapping.values())
        kept = {k: v for k, v in row.items() if k not in sources and k not in _FORMAT_KEYS}
        row = kept | {field: row.get(column) for field, column in mapping.items()}
    for key in _NESTED:
        if (parsed := _json_text(row.get(key))) is not None:
            row[key] = parsed
    if "chosen" in row or "preferred_output" in row:  # preference pairs (classify only those: it costs per row)
        kind = classify(row)
        if kind == "openai_dpo" and (parsed := _json_text(row.get("input"))) is not None:
            row["input"] = parsed
        elif kind == "trl_preference":
            for key in ("prompt", "chosen", "rejected"):
                if _is_messages(parsed := _json_text(row.get(key))):
                    row[key] = parsed
    return row
