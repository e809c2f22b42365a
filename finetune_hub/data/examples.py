"""`read_examples`: the canonical records of a dataset in any format, for code that needs the examples themselves
(held-out prompts, say) rather than a report. The first record that cannot be read stops it, naming file:line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from finetune_hub.data.detect import detect
from finetune_hub.data.findings import RecordError
from finetune_hub.data.formats import parse_mapping
from finetune_hub.data.importers import importer_for
from finetune_hub.data.sources import table_rows
from finetune_hub.errors import DataError


def read_examples(
    path: Path, fmt: str = "auto", columns: str | dict[str, str] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, canonical record) for each example of `path`, streamed. Unreadable records raise DataError."""
    path, mapping = Path(path), parse_mapping(columns)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    detection = detect(path, fmt, mapping)
    if not detection.format:
        raise DataError(f"{path}: {detection.reason}; none matches a known format", hint="see `fth validate`")
    importer = importer_for(detection.format)
    for line, record in table_rows(path, detection.container, mapping):
        try:
            if isinstance(record, RecordError):
                raise record
            if not isinstance(record, dict):
                raise RecordError("data_type", f"the example is a {type(record).__name__}, not an object")
            canonical, _ = importer(record)
        except RecordError as exc:
            hint = "`fth validate` lists every problem"
            raise DataError(f"{path}:{line}: {exc.message} [{exc.rule}]", hint=hint) from None
        yield line, canonical
