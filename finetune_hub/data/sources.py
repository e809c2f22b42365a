"""Readers for every container, all streaming: JSONL byte ranges, JSON arrays (incremental decoder), CSV/TSV,
Parquet (row-group batches), Hugging Face `datasets` directories (memory-mapped) and plain text.

Each yields (line, record) where line is the 1-based line (row for tables) and record is the parsed value,
or a `RecordError` when that record cannot be read. Only JSONL is split into byte ranges for parallel scans.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any, BinaryIO

import msgspec

from finetune_hub.data.findings import RecordError
from finetune_hub.data.formats import STRICT_JSON, loads, mapped, refuse_lone_surrogates

BOM = b"\xef\xbb\xbf"
Item = tuple[int, Any]
_READ = 1 << 20
_MAX_JSON_ELEMENT = 256 << 20  # a JSON-array element larger than this is reported, not buffered further
_DECODE = msgspec.json.Decoder().decode  # stateless


def data_size(path: Path) -> int:
    """Bytes of a file, or of every file in a dataset directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def split_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges of about equal size, each starting at a line start."""
    size = path.stat().st_size
    bounds = [0]
    with open(path, "rb") as fh:
        for k in range(1, parts):
            fh.seek(max(bounds[-1], size * k // parts))
            fh.readline()  # finish the line we landed in
            pos = fh.tell()
            if pos >= size:
                break
            if pos > bounds[-1]:
                bounds.append(pos)
    bounds.append(size)
    return list(itertools.pairwise(bounds))


def jsonl_lines(fh: BinaryIO, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """Raw lines of [start, end), numbered from 1 within the range. A line is read whole (one example)."""
    fh.seek(start)
    pos = start
    for number, raw in enumerate(fh, start=1):
        yield number, raw
        pos += len(raw)
        if pos >= end:
            return


#: first bytes of a file that holds no UTF-8 lines: one finding at line 1 (the rule), and the rest is not read
NOT_TEXT = MappingProxyType(
    {b"\xff\xfe": "encoding.utf16", b"\xfe\xff": "encoding.utf16", b"\x1f\x8b": "file.compressed"}
)


def not_text(path: Path) -> str | None:
    """The rule for a file whose first bytes say it holds no UTF-8 lines (UTF-16, gzip), else None."""
    with open(path, "rb") as fh:
        return NOT_TEXT.get(fh.read(2))


def decode_json_line(raw: bytes) -> Any:
    """Parse one JSONL line; invalid UTF-8 and invalid JSON become `RecordError`s that say where. msgspec parses
    (twice as fast as json); what it refuses goes to json, which words the errors. The line is decoded strictly
    first (json.loads would pass surrogate bytes through), and what only Python reads (NaN, lone surrogate
    escapes) is refused as msgspec refuses it."""
    try:
        return _DECODE(raw)
    except (ValueError, RecursionError):
        pass
    try:
        text = raw.decode("utf-8-sig")  # (a BOM mid-file stays readable, as before)
    except UnicodeDecodeError as exc:
        raise RecordError("encoding.invalid_utf8", f"byte {exc.start + 1} of the line is not UTF-8") from None
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            raise RecordError("json.invalid", "the JSON ends early (a truncated line?)") from None
        raise RecordError("json.invalid", f"not valid JSON: {exc.msg} at column {exc.pos + 1}") from None
    except RecursionError:
        raise RecordError("json.invalid", "JSON nested too deeply") from None


def json_array(path: Path) -> Iterator[Item]:
    """Elements of a top-level JSON array, decoded incrementally (the file is never read whole). Anything but
    one comma between elements, and anything but whitespace after the closing ], is `json.invalid`."""
    lenient = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    buf, pos, line, eof = "", 0, 1, False
    with open(path, "rb") as fh:

        def more() -> bool:
            nonlocal buf, pos, eof
            chunk = fh.read(_READ)
            eof = not chunk
            try:
                text = utf8.decode(chunk, final=eof)
            except UnicodeDecodeError:
                raise RecordError("encoding.invalid_utf8", f"invalid UTF-8 after line {line}") from None
            buf, pos = buf[pos:] + text, 0
            return not eof

        def skip() -> str:
            """Skip whitespace; the next character, "" at the end of the file."""
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    line += buf[pos] == "\n"
                    pos += 1
                if pos < len(buf) or not more():
                    return buf[pos : pos + 1]

        try:
            more()
            buf = buf.removeprefix("\ufeff")
            if skip() != "[":
                yield line, RecordError("json.invalid", "a .json dataset must be one JSON array of examples")
                return
            pos += 1
            closed = skip() == "]"
            while not closed:
                while True:
                    try:
                        try:
                            value, end = STRICT_JSON.raw_decode(buf, pos)
                            refuse_lone_surrogates(value, buf, pos, end)
                        except RecordError as refused:  # NaN, 1e999, a lone surrogate: this element only
                            end, value = lenient.raw_decode(buf, pos)[1], refused  # (where it ends, to go on)
                        break
                    except json.JSONDecodeError as exc:
                        if eof or len(buf) - pos > _MAX_JSON_ELEMENT:
                            yield line + buf.count("\n", pos, exc.pos), RecordError("json.invalid", exc.msg)
                            return
                        more()
                yield line, value
                line += buf.count("\n", pos, end)
                pos, ended = end, line  # `ended`: the line where the element (or its comma) ends
                after = skip()
                if after == ",":
                    pos, ended = pos + 1, line
                    after = skip()
                    if after in ("]", ""):
                        what = "a comma before the closing ]" if after else "the file ends after a comma (truncated?)"
                        yield ended, RecordError("json.invalid", what)
                        return
                elif after == "]":
                    closed = True
                elif not after:
                    yield ended, RecordError("json.invalid", "the file ends before the closing ] (truncated?)")
                    return
                else:
                    yield line, RecordError("json.invalid", f"expected ',' or ']' after an element, found {after!r}")
                    return
            pos += 1
            if after_end := skip():
                yield line, RecordError("json.invalid", f"{after_end!r} after the closing ]: one array per file")
        except RecordError as exc:
            yield line, exc


def _without_nulls(value: Any) -> Any:
    """Arrow structs give every row every field; a missing key comes back as None. Drop those."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def csv_rows(path: Path, mapping: dict[str, str], delimiter: str = ",") -> Iterator[Item]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        start = 2
        try:
            columns = reader.fieldnames or []
            if missing := [c for c in mapping.values() if c not in columns]:
                yield 1, RecordError("format.column_missing", f"column(s) {missing} not in the header {columns}")
                return
            for row in reader:
                # the row ends on line_num; quoted newlines inside it, not blank lines before it, put its start back
                start = reader.line_num - sum(v.count("\n") for v in row.values() if isinstance(v, str))
                yield start, mapped(row, mapping)
                start = reader.line_num + 1
        except UnicodeDecodeError:
            yield start, RecordError("encoding.invalid_utf8", "invalid UTF-8 in this row")
        except csv.Error as exc:
            yield start, RecordError("json.invalid", f"CSV error: {exc}")


def parquet_rows(path: Path, mapping: dict[str, str]) -> Iterator[Item]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        yield 1, RecordError("file.unreadable", f"not a readable Parquet file ({exc})")
        return
    if missing := [c for c in mapping.values() if c not in table.schema_arrow.names]:
        yield 1, RecordError("format.column_missing", f"column(s) {missing} not in {table.schema_arrow.names}")
        return
    row = 0
    for batch in table.iter_batches(batch_size=1024):
        for item in batch.to_pylist():
            row += 1
            yield row, mapped(_without_nulls(item), mapping)


def hf_dataset_rows(path: Path, mapping: dict[str, str], split: str = "train") -> Iterator[Item]:
    try:
        from datasets import DatasetDict, load_from_disk
    except ImportError:
        hint = "reading a Hugging Face `datasets` folder needs the datasets package: pip install 'finetune-hub[data]'"
        yield 1, RecordError("file.unreadable", hint)
        return
    try:
        data = load_from_disk(str(path))
    except (OSError, ValueError) as exc:  # FileNotFoundError for a folder that is not a saved dataset
        yield 1, RecordError("file.unreadable", f"not a Hugging Face `datasets` folder ({exc})")
        return
    if isinstance(data, DatasetDict):
        data = data[split] if split in data else data[next(iter(data))]
    if missing := [c for c in mapping.values() if c not in data.column_names]:
        yield 1, RecordError("format.column_missing", f"column(s) {missing} not in {data.column_names}")
        return
    for row, item in enumerate(data, start=1):
        yield row, mapped(_without_nulls(item), mapping)


def jsonl_records(path: Path, mapping: dict[str, str]) -> Iterator[Item]:
    """Each non-blank line of a JSONL file, BOM dropped and columns mapped; an unreadable line gives its
    RecordError. (The scanner reads byte ranges with `jsonl_lines` instead, to split the work.)"""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            raw = raw.removeprefix(BOM) if number == 1 else raw
            if not raw.strip():
                continue
            try:
                record = decode_json_line(raw)
            except RecordError as exc:
                yield number, exc
                continue
            yield number, mapped(record, mapping) if mapping and isinstance(record, dict) else record


def text_lines(path: Path) -> Iterator[Item]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if number == 1:
                raw = raw.removeprefix(BOM)
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                yield number, RecordError("encoding.invalid_utf8", f"byte {exc.start + 1} of the line is not UTF-8")
                continue
            if text.strip():
                yield number, {"text": text}


def table_rows(path: Path, container: str, mapping: dict[str, str]) -> Iterator[Item]:
    if container == "jsonl":
        return jsonl_records(path, mapping)
    if container in ("csv", "tsv"):
        return csv_rows(path, mapping, "\t" if container == "tsv" else ",")
    if container == "parquet":
        return parquet_rows(path, mapping)
    if container == "hf_dataset":
        return hf_dataset_rows(path, mapping)
    if container == "txt":
        return text_lines(path)
    return json_array(path)
