"""Format auto-detection that says what it saw: the container from the path and first bytes, the record
format from the first record's keys (after the column mapping, for tables)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from finetune_hub.data.findings import RecordError
from finetune_hub.data.formats import FORMATS, Detection, classify, container_of, mapped
from finetune_hub.data.sources import BOM, table_rows

_PEEK_LINES = 1000  # blank or broken lines skipped while looking for the first record


def _first_jsonl_record(path: Path) -> tuple[int, Any] | None:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number > _PEEK_LINES:
                return None
            raw = raw.removeprefix(BOM) if number == 1 else raw
            if not raw.strip():
                continue
            try:
                return number, json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
    return None


def detect(path: Path, fmt: str = "auto", mapping: dict[str, str] | None = None) -> Detection:
    """What `path` holds. `fmt` other than "auto" is taken as given. Format "" means: not recognised."""
    container, why = container_of(path)
    if fmt != "auto":
        if fmt not in FORMATS:
            from finetune_hub.errors import DataError

            raise DataError(f"unknown format {fmt!r}", hint=f"use one of: auto, {', '.join(FORMATS)}")
        return Detection(container, fmt, f"{why}; format given as {fmt}")
    if container == "jsonl":
        first = _first_jsonl_record(path)
    else:
        rows = table_rows(path, container, mapping or {})
        first = next(iter(rows), None)
        getattr(rows, "close", lambda: None)()  # release the file the reader holds
    if first is None or isinstance(first[1], RecordError):
        return Detection(container, "openai_chat", f"{why}; no readable record to inspect, assuming OpenAI chat")
    number, record = first
    if mapping and container == "jsonl" and isinstance(record, dict):
        record = mapped(record, mapping)
    found = classify(record)
    keys = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
    if found is None:
        return Detection(container, "", f"{why}; the record at line {number} has keys {keys}")
    return Detection(container, found, f"{why}; the record at line {number} has keys {keys}")
