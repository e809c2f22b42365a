"""Format auto-detection that says what it saw: the container from the path and first bytes, the record
format from the first record's keys (after the column mapping, for tables)."""

from __future__ import annotations

from pathlib import Path

from finetune_hub.data.findings import RecordError
from finetune_hub.data.formats import FORMATS, Detection, classify, container_of
from finetune_hub.data.sources import not_text, table_rows

_PEEK_LINES = 1000  # blank or broken lines skipped while looking for the first record


def detect(path: Path, fmt: str = "auto", mapping: dict[str, str] | None = None) -> Detection:
    """What `path` holds. `fmt` other than "auto" is taken as given. Format "" means: not recognised."""
    container, why = container_of(path)
    if fmt != "auto":
        if fmt not in FORMATS:
            from finetune_hub.errors import DataError

            raise DataError(f"unknown format {fmt!r}", hint=f"use one of: auto, {', '.join(FORMATS)}")
        return Detection(container, fmt, f"{why}; format given as {fmt}")
    if container == "jsonl" and (rule := not_text(path)):  # gzip bytes may hold a line that parses as JSON
        return Detection(container, "openai_chat", f"{why}; not text ({rule}), assuming OpenAI chat", assumed=True)
    rows = iter(table_rows(path, container, mapping or {}))
    first = next(rows, None)
    while container == "jsonl" and first and isinstance(first[1], RecordError) and first[0] < _PEEK_LINES:
        first = next(rows, None)  # a broken line near the top of a JSONL file: look at the next one
    getattr(rows, "close", lambda: None)()  # release the file the reader holds
    if first is None or isinstance(first[1], RecordError):
        reason = f"{why}; no readable record to inspect, assuming OpenAI chat"
        return Detection(container, "openai_chat", reason, assumed=True)
    number, record = first
    found = classify(record)
    keys = sorted(record)[:8] if isinstance(record, dict) else type(record).__name__
    return Detection(container, found or "", f"{why}; the record at line {number} has keys {keys}")
