"""The one streaming pass behind validate, stats and convert: read → import → check → count → export.

JSONL files over a few MB are split into line-aligned byte ranges scanned by worker processes; each worker
writes its converted part, and the parts are merged in order (line numbers shifted by the lines before them).
A pass-through export (ScanPlan.copies_source) writes no parts: the kernel copies the source file meanwhile, on a
thread (the GIL is free during the copy), and `convert` keeps that copy if the scan finds the file valid.
Memory per example is 16 bytes (token count, fingerprint, line), so a multi-GB file stays in a few hundred MB.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import shutil
from array import array
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from xxhash import xxh3_64_intdigest

from finetune_hub.data import packs, rules
from finetune_hub.data.exporters import FILE_PREFIX, exporter_for, is_passthrough
from finetune_hub.data.findings import ERROR, Findings, RecordError, finding
from finetune_hub.data.formats import FORMATS, classify, mapped
from finetune_hub.data.importers import DROPPED, importer_for, kind_of
from finetune_hub.data.sources import (
    BOM,
    NOT_TEXT,
    data_size,
    decode_json_line,
    jsonl_lines,
    not_text,
    split_ranges,
    table_rows,
)
from finetune_hub.data.tokens import TokenCounter, counter_for

PARALLEL_MIN_BYTES = 16 << 20  # below this, starting workers costs more than it saves
_RANGE_BYTES = 32 << 20  # a worker's JSONL range is at most about this big (progress moves every range)
Progress = Callable[[int], None]  # called with the bytes just scanned
_CHANGE_LINES = 5  # lines remembered per kind of change, for the report
_CHANGE_KINDS = 100  # distinct change keys kept (dropped field names come from the data, so they are capped)


@dataclass(frozen=True)
class ScanPlan:
    path: Path
    container: str
    fmt: str
    display: str = ""  # the file name findings show
    mapping: dict[str, str] = field(default_factory=dict)
    targets: tuple[str, ...] = ()  # platform rule packs applied to each record
    export_to: str | None = None
    model: str | None = None
    provider: str | None = None
    count_tokens: bool = True

    @property
    def copies_source(self) -> bool:
        """The export is the source's own lines (OpenAI chat JSONL to a target that reads it as is): no parts are
        written, the file is copied whole beside the scan."""
        canonical = self.container == "jsonl" and self.fmt in ("openai_chat", "openai_dpo") and not self.mapping
        return canonical and self.export_to is not None and is_passthrough(self.export_to)


@dataclass
class ScanResult:
    findings: Findings = field(default_factory=Findings)
    lines: int = 0  # raw lines (or rows) seen, blank ones included
    records: int = 0  # non-blank lines / rows
    examples: int = 0  # records that are examples (whatever their problems)
    messages: int = 0
    trained_tokens: int = 0
    has_bom: bool = False
    written: int = 0
    counter: str = ""
    exact: bool = False
    roles: Counter[str] = field(default_factory=Counter)
    changes: Counter[str] = field(default_factory=Counter)
    change_lines: dict[str, list[int]] = field(default_factory=dict)
    token_counts: array[int] = field(default_factory=lambda: array("I"))
    fingerprints: array[int] = field(default_factory=lambda: array("Q"))
    example_lines: array[int] = field(default_factory=lambda: array("I"))
    parts: list[Path] = field(default_factory=list)  # converted output, in order
    source_copy: Path | None = None  # a pass-through export: the source's bytes, copied while scanning

    def merge(self, other: ScanResult) -> None:
        offset = self.lines
        self.findings.extend(other.findings, line_offset=offset)
        for name in ("records", "examples", "messages", "trained_tokens", "written", "lines"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.has_bom = self.has_bom or other.has_bom
        self.counter, self.exact = other.counter or self.counter, other.exact
        self.roles.update(other.roles)
        for key, examples in other.changes.items():
            self.count_change(key, examples, [n + offset for n in other.change_lines.get(key, ())])
        self.token_counts += other.token_counts
        self.fingerprints += other.fingerprints
        self.example_lines += array("I", (n + offset for n in other.example_lines))
        self.parts += other.parts

    def count_change(self, key: str, examples: int, lines: list[int]) -> None:
        """Counts `examples` with change `key`, keeping its first lines; past _CHANGE_KINDS kinds (the names
        of dropped fields come from the data), a new kind is counted in one bucket per change."""
        if key not in self.changes and len(self.changes) >= _CHANGE_KINDS:
            key = f"{key.partition(':')[0]}:(other fields)"
        self.changes[key] += examples
        kept = self.change_lines.setdefault(key, [])
        kept += lines[: _CHANGE_LINES - len(kept)]


@functools.lru_cache(maxsize=8)
def _counter(model: str | None, provider: str | None) -> TokenCounter:
    """One counter per process and model (loading a tokenizer takes a fraction of a second)."""
    return counter_for(model, provider)


def fingerprint(record: dict[str, Any], kind: str, roles: Counter[str] | None = None) -> int:
    """64-bit fingerprint of what an example says (roles, contents, tool calls), independent of key order,
    spacing and source format, so duplicates and train/validation overlap are found across formats. `roles`,
    when given, counts a chat example's roles in the same pass over its messages. XXH3 hashes a 1 KB example
    8× faster than blake2b."""
    if kind == "chat":
        keys = []
        messages = record.get("messages")
        for m in messages if isinstance(messages, list) else ():
            if type(m) is dict:
                role = m.get("role")
                if roles is not None and type(role) is str:
                    roles[role] += 1
                keys.append(f"{role}\x1f{m.get('content')}\x1f{m.get('tool_calls') or ''}")
            else:
                keys.append(repr(m))
        key = "\x1e".join(keys)
    elif kind == "text":
        key = str(record.get("text"))
    else:
        key = json.dumps(record, sort_keys=True, default=str)
    return xxh3_64_intdigest(key.encode("utf-8", "surrogatepass"))


class Scanner:
    """Feeds records through the checks, the counter and the exporter; collects a `ScanResult`."""

    def __init__(self, plan: ScanPlan, out: BinaryIO | None) -> None:
        self.plan = plan
        self.result = ScanResult()
        self.counter = _counter(plan.model, plan.provider) if plan.count_tokens else None
        if self.counter is not None:
            self.result.counter, self.result.exact = self.counter.name, self.counter.exact
        self.importer = importer_for(plan.fmt)
        self.exporter = exporter_for(plan.export_to) if plan.export_to else None
        self.out = out
        self.copies_source = plan.copies_source

    def flag(self, line: int, rule: str, message: str | None = None) -> None:
        self.result.findings.add(finding(rule, self.plan.display, line, message))

    def add(self, line: int, record: Any) -> None:
        result, plan = self.result, self.plan
        result.records += 1
        if isinstance(record, RecordError):
            self.flag(line, record.rule, record.message)
            return
        if not isinstance(record, dict):
            self.flag(line, "data_type", f"the example is a {type(record).__name__}, not an object")
            return
        seen = classify(record)
        if seen != plan.fmt and {seen, plan.fmt} != {"sharegpt", "hf_chat"}:  # one family: the importer explains
            if seen is not None:
                self.flag(line, "format.mixed", f"looks like {FORMATS[seen]}; the file is {FORMATS[plan.fmt]}")
                return
            if plan.fmt != "openai_chat":  # a chat file's stray line gets the cookbook's missing_messages_list
                self.flag(line, "format.unknown", f"keys {sorted(record)[:6]} match no format")
                return
        try:
            canonical, imported = self.importer(record)
        except RecordError as exc:
            self.flag(line, exc.rule, exc.message)
            return
        kind = kind_of(canonical)
        problems = rules.check(canonical, kind)
        for target in plan.targets:
            problems += packs.record_checks(target, canonical, kind)
        has_error = False
        for rule, message in problems:
            item = finding(rule, plan.display, line, message)
            result.findings.add(item)
            has_error = has_error or item.severity == ERROR
        result.examples += 1
        has_error = self._count(line, canonical, kind) or has_error
        result.fingerprints.append(fingerprint(canonical, kind, result.roles))
        result.example_lines.append(line)
        if imported:
            self._note(line, imported)
            for key in dict.fromkeys(imported):
                base, _, field = key.partition(":")
                if base == DROPPED:
                    self.flag(line, "format.field_dropped", f"{field}: not carried into OpenAI chat JSONL")
        if self.out is not None and not has_error:
            self._export(line, canonical)
        elif self.copies_source and not has_error:
            result.written += 1

    def _note(self, line: int, changes: list[str]) -> None:
        """Counts each kind of change once per example, with the first lines where it happened."""
        for key in dict.fromkeys(changes):
            self.result.count_change(key, 1, [line])

    def _count(self, line: int, canonical: dict[str, Any], kind: str) -> bool:
        """Counts the example's tokens; True when they cannot be counted (a finding says why)."""
        result = self.result
        messages = canonical.get("messages")
        result.messages += len(messages) if isinstance(messages, list) else 0
        tokens = trained = 0
        failed = False
        if self.counter is not None:
            try:
                tokens, trained = self.counter.example(canonical, kind)
            except RecordError as exc:  # the model's chat template refuses the example
                self.flag(line, exc.rule, exc.message)
                failed = True
            except (TypeError, AttributeError, ValueError):  # malformed parts: already reported
                tokens = trained = 0  # (a try costs nothing; contextlib.suppress cost 1 µs an example)
        result.token_counts.append(min(tokens, 0xFFFFFFFF))
        result.trained_tokens += trained
        return failed

    def _export(self, line: int, canonical: dict[str, Any]) -> None:
        assert self.out is not None and self.exporter is not None
        try:
            converted, changes = self.exporter(canonical)
        except RecordError as exc:  # a record the target format cannot hold, which the checks let through
            self.flag(line, exc.rule, exc.message)
            return
        try:
            data = json.dumps(converted, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate the readers let through: never write invalid UTF-8
            self.flag(line, "encoding.lone_surrogate")
            return
        self.out.write(data + b"\n")
        self._note(line, changes)
        self.result.written += 1


def _open_part(plan: ScanPlan, out_dir: Path | None, index: int) -> tuple[Path | None, BinaryIO | None]:
    if out_dir is None or plan.copies_source:
        return None, None
    path = out_dir / f"part-{index:05d}"
    return path, open(path, "wb")


def scan_range(
    plan: ScanPlan, start: int, end: int, out_dir: Path | None, index: int, progress: Progress | None = None
) -> ScanResult:
    """Scan the JSONL lines in [start, end): one worker's share, or a whole file (with `progress` told the
    bytes scanned every 16,384 lines)."""
    reported = start
    part, out = _open_part(plan, out_dir, index)
    scanner = Scanner(plan, out)
    result = scanner.result
    collecting = gc.isenabled()
    gc.disable()  # parsed JSON has no reference cycles; the collector's passes over each line's objects cost ~4%
    try:
        with open(plan.path, "rb") as fh:
            for number, raw in jsonl_lines(fh, start, end):
                result.lines = number
                if number & 0x3FFF == 0 and progress is not None:
                    here = fh.tell()
                    progress(here - reported)
                    reported = here
                if number == 1 and start == 0:
                    if rule := NOT_TEXT.get(raw[:2]):
                        scanner.flag(1, rule)
                        result.records += 1
                        break
                    if raw.startswith(BOM):
                        raw, result.has_bom = raw[3:], True
                        if "azure_openai" not in plan.targets:
                            scanner.flag(1, "encoding.bom")
                elif raw.startswith(BOM):  # files joined with `cat`: the second one's BOM starts a line
                    raw = raw[3:]
                    scanner.flag(number, "encoding.bom_inside")
                if raw.isspace() or not raw:  # (raw.strip() would copy every line)
                    scanner.flag(number, "jsonl.blank_line")
                    continue
                try:
                    record = decode_json_line(raw)
                except RecordError as exc:
                    scanner.add(number, exc)
                    continue
                scanner.add(number, mapped(record, plan.mapping) if plan.mapping and type(record) is dict else record)
    finally:
        if collecting:
            gc.enable()
        if out is not None:
            out.close()
    if part is not None:
        result.parts.append(part)
    if progress is not None:
        progress(end - reported)
    return result


def scan_rows(plan: ScanPlan, rows: Iterable[tuple[int, Any]], out_dir: Path | None) -> ScanResult:
    part, out = _open_part(plan, out_dir, 0)
    scanner = Scanner(plan, out)
    try:
        for number, record in rows:
            scanner.result.lines = number
            scanner.add(number, record)
    finally:
        if out is not None:
            out.close()
    if part is not None:
        scanner.result.parts.append(part)
    return scanner.result


def default_workers(size: int) -> int:
    """One process per CPU (at most 16) for files big enough to pay for starting them."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if size < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(cpus, 16, size // (PARALLEL_MIN_BYTES // 2)))


def scan(
    plan: ScanPlan, out_dir: Path | None = None, workers: int | None = None, progress: Progress | None = None
) -> ScanResult:
    """Scan a whole file or dataset directory; JSONL in parallel byte ranges when that pays. `progress` is
    called with the bytes just scanned: per range of at most 32 MB in parallel, every 16,384 lines in one
    process, at the end for a table."""
    progress = progress or _ignore
    if not (plan.copies_source and out_dir is not None) or FILE_PREFIX.get(plan.export_to or ""):
        return _scan(plan, out_dir, workers, progress)
    with ThreadPoolExecutor(max_workers=1) as copier:
        copy = copier.submit(shutil.copyfile, plan.path, out_dir / "source-copy")
        result = _scan(plan, out_dir, workers, progress)
        result.source_copy = Path(copy.result())
    return result


def _ignore(scanned: int) -> None:
    pass


def _scan(plan: ScanPlan, out_dir: Path | None, workers: int | None, progress: Progress) -> ScanResult:
    if plan.container != "jsonl":
        result = scan_rows(plan, table_rows(plan.path, plan.container, plan.mapping), out_dir)
        progress(data_size(plan.path))
        return result
    size = plan.path.stat().st_size
    workers = workers or default_workers(size)
    if workers <= 1 or not_text(plan.path):  # UTF-16, gzip: reported at line 1, the rest is not UTF-8 lines
        return scan_range(plan, 0, size, out_dir, 0, progress)
    # more ranges than workers evens out uneven lines; ranges of at most 32 MB let progress move
    ranges = split_ranges(plan.path, max(workers * 4, size // _RANGE_BYTES))
    total = ScanResult()
    if plan.count_tokens:
        _counter(plan.model, plan.provider)  # loaded once here; forked workers inherit it
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(scan_range, plan, a, b, out_dir, k) for k, (a, b) in enumerate(ranges)]
        sizes = {future: b - a for future, (a, b) in zip(futures, ranges, strict=True)}
        merged = 0
        for future in as_completed(futures):
            progress(sizes[future])
            while merged < len(futures) and futures[merged].done():  # in file order, while the others scan
                total.merge(futures[merged].result())
                merged += 1
    return total
