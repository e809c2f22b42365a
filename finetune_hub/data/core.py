"""First cut of the data entry points: OpenAI chat JSONL in, per-platform JSONL out."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_hub.errors import DataError


@dataclass(frozen=True)
class DatasetStats:
    examples: int
    tokens: int  # summed over examples, as the counter sees them
    max_tokens: int
    exact: bool  # False when tokens were approximated
    counter: str  # which tokenizer (or approximation) counted


@dataclass
class ConversionReport:
    source: Path
    target: str
    out: Path
    examples: int = 0
    changes: list[str] = field(default_factory=list)  # every field changed or dropped, with the line


def content_hash(*paths: Path | None) -> str:
    """SHA-256 over the files' bytes (streamed), in order; missing entries count as empty."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(b"\0file\0")
        if path is not None:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()


def _records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DataError(f"{path}: no such file", hint="check the data paths in the spec")
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})", hint="fix or remove the line") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: each line must be a JSON object")
            yield number, record


def _approx_tokens(record: dict[str, Any]) -> int:
    text = json.dumps(record, ensure_ascii=False)
    return max(1, len(text) // 4)


def stats(path: Path, *, model: str | None = None) -> DatasetStats:
    total = peak = count = 0
    for _, record in _records(path):
        n = _approx_tokens(record)
        total, peak, count = total + n, max(peak, n), count + 1
    return DatasetStats(count, total, peak, exact=False, counter="approximate (4 characters per token)")


def validate_for(path: Path, provider: str) -> list[str]:
    """Errors that make the file unusable for `provider` (empty list when fine)."""
    errors = []
    count = 0
    for number, record in _records(path):
        count += 1
        if not isinstance(record.get("messages"), list) and "input" not in record:
            errors.append(f"{path}:{number}: no 'messages' list")
    if count == 0:
        errors.append(f"{path}: the file has no examples")
    return errors


def convert(source: Path, *, to: str, out: Path, fmt: str = "auto") -> ConversionReport:
    """Write `source` as `to` expects it (OpenAI chat JSONL passes through unchanged)."""
    report = ConversionReport(source=source, target=to, out=out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        for _, record in _records(source):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            report.examples += 1
    return report
