"""`convert`: validate, count and write a dataset the way a platform reads it, in one streaming pass.

The output appears only when the whole input is valid (written to a temporary file, then renamed), and the
report names every field changed or dropped, with counts and the first lines where it happened.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from finetune_hub.data.exporters import CHANGES, FILE_PREFIX, TARGETS
from finetune_hub.data.findings import Finding
from finetune_hub.data.formats import parse_mapping
from finetune_hub.data.scan import Progress
from finetune_hub.data.sources import BOM
from finetune_hub.data.validation import analyze
from finetune_hub.errors import DataError


@dataclass
class ConversionReport:
    source: Path
    target: str
    out: Path
    examples: int = 0
    changes: list[str] = field(default_factory=list)  # every field changed or dropped, with counts and lines
    change_counts: dict[str, int] = field(default_factory=dict)  # change key (exporters.CHANGES) → examples
    detected: str = ""  # what the source was read as
    warnings: list[Finding] = field(default_factory=list)
    tokens: int = 0
    counter: str = ""


class ConversionError(DataError):
    """The source has errors; nothing was written. `findings` lists them."""

    def __init__(self, message: str, findings: list[Finding]) -> None:
        super().__init__(message, hint="fix these (see `fth validate`) and convert again; nothing was written")
        self.findings = findings


def _describe(key: str, count: int, lines: list[int]) -> str:
    base, _, detail = key.partition(":")
    what = CHANGES[base].format(detail) if detail else CHANGES[base]
    if lines:
        return f"{what} — {count:,} example(s); first at line {', '.join(map(str, lines))}"
    return f"{what} — {count:,}" if count > 1 else what


def _join(parts: list[Path], staged: Path, prefix: bytes) -> None:
    if len(parts) == 1 and not prefix:
        os.replace(parts[0], staged)
        return
    with open(staged, "wb") as sink:
        sink.write(prefix)
        for part in parts:
            with open(part, "rb") as chunk:
                shutil.copyfileobj(chunk, sink, 4 << 20)
            part.unlink()


def _copy_lines(source: Path, staged: Path, prefix: bytes, exact: bool, copied: Path | None) -> None:
    """`source` as valid JSONL: without its BOM and blank lines, every line ending in a newline. When it has
    neither (`exact`), its bytes whole: `copied` (made while scanning) where there is one."""
    if not exact:
        with open(source, "rb") as lines, open(staged, "wb") as sink:
            sink.write(prefix)
            for raw in lines:
                raw = raw.removeprefix(BOM)  # the file's, and any a `cat` of two files left inside
                if raw.strip():
                    sink.write(raw if raw.endswith(b"\n") else raw + b"\n")
        return
    if copied is not None:  # the scan copies only where no prefix is needed
        os.replace(copied, staged)
    else:
        with open(source, "rb") as whole, open(staged, "wb") as sink:
            sink.write(prefix)
            shutil.copyfileobj(whole, sink, 16 << 20)
    with open(staged, "rb+") as sink:  # a last line without its newline gets one
        if sink.seek(0, os.SEEK_END) > len(prefix) and (sink.seek(-1, os.SEEK_END), sink.read(1))[1] != b"\n":
            sink.write(b"\n")


def convert(
    source: Path,
    *,
    to: str,
    out: Path,
    fmt: str = "auto",
    columns: str | dict[str, str] | None = None,
    model: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    role: str = "train",
) -> ConversionReport:
    """Write `source` as platform `to` reads it (see exporters.TARGETS); raises ConversionError on bad data.
    `progress` is called with the bytes scanned as the scan goes; `role` "validation" checks the file as a
    validation file (no minimum number of examples)."""
    if to not in TARGETS:
        raise DataError(f"unknown conversion target {to!r}", hint=f"use one of: {', '.join(TARGETS)}")
    source, out = Path(source), Path(out)
    if out.is_dir():
        raise DataError(f"{out} is a directory", hint="give a file name for the converted data, e.g. train.jsonl")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # e.g. a folder in the path is a file: out.jsonl/converted.jsonl
        blocker = next((p for p in reversed(out.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else (exc.strerror or str(exc))
        raise DataError(f"cannot write {out}: {why}", hint="give an output path in a folder you can write") from None
    with tempfile.TemporaryDirectory(prefix=".fth-convert-", dir=out.parent) as tmp:
        file_report, result = analyze(
            source,
            targets=(to,),
            model=model,
            fmt=fmt,
            mapping=parse_mapping(columns),
            export_to=to,
            out_dir=Path(tmp),
            workers=workers,
            progress=progress,
            role=role,
        )
        found = result.findings.sorted()
        if result.findings.errors:
            errors = [f for f in found if f.severity == "error"]
            lines = "\n  ".join(str(f) for f in errors[:10])
            more = f"\n  ... {result.findings.errors - 10:,} more" if result.findings.errors > 10 else ""
            raise ConversionError(f"{source}: {result.findings.errors:,} error(s):\n  {lines}{more}", errors)
        staged = Path(tmp) / "converted"
        if result.parts:
            _join(result.parts, staged, FILE_PREFIX.get(to, b""))
        else:  # the source's own lines (scan.ScanPlan.copies_source)
            blank_lines = bool(result.findings.counts.get("jsonl.blank_line"))
            exact = not (result.has_bom or blank_lines or result.findings.counts.get("encoding.bom_inside"))
            _copy_lines(source, staged, FILE_PREFIX.get(to, b""), exact, result.source_copy)
        os.replace(staged, out)

    report = ConversionReport(
        source=source,
        target=to,
        out=out,
        examples=result.written,
        detected=file_report.detection.describe() if file_report.detection else "",
        warnings=[f for f in found if f.severity == "warning"],
        tokens=sum(result.token_counts),
        counter=result.counter,
    )
    counts = dict(result.changes)
    if to in FILE_PREFIX:
        counts["azure.bom_added"] = 1
    if result.has_bom and to not in FILE_PREFIX:
        counts["source.bom_removed"] = 1
    if inside := result.findings.counts.get("encoding.bom_inside", 0):
        counts["source.inner_boms_removed"] = inside
    if blank := result.findings.counts.get("jsonl.blank_line", 0):
        counts["source.blank_lines_removed"] = blank
    if file_report.detection and file_report.detection.format not in ("openai_chat", "openai_dpo"):
        counts["source.imported"] = result.written
    report.change_counts = counts
    report.changes = [_describe(key, n, result.change_lines.get(key, [])) for key, n in counts.items()]
    return report
