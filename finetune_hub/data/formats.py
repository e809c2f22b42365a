"""Dataset formats: their names, how a record is recognised, and how a file's format is detected."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def mapped(row: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    """A table row with its columns renamed to canonical field names; JSON-looking strings in list
    fields (messages, conversations) are parsed, since CSV cannot hold nested values."""
    if mapping:
        row = {field: row.get(column) for field, column in mapping.items()}
    for key in (
        "messages",
        "conversations",
        "tools",
        "contents",
        "completions",
        "preferred_output",
        "non_preferred_output",
    ):
        value = row.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(json.JSONDecodeError):  # not JSON after all: keep the text
                row[key] = json.loads(value)
    return row
