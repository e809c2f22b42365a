"""Validation: one streaming scan per file, then the whole-file rules (duplicates, train/validation overlap,
token limits, platform packs). Every finding has a rule id, severity, file, line, message and fix."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finetune_hub.data import packs
from finetune_hub.data.billing import example_token_cap
from finetune_hub.data.dataset_stats import DatasetStats
from finetune_hub.data.detect import detect
from finetune_hub.data.findings import Finding, Findings, finding
from finetune_hub.data.formats import Detection, parse_mapping
from finetune_hub.data.scan import Progress, ScanPlan, ScanResult, scan
from finetune_hub.data.sources import data_size


@dataclass
class FileReport:
    path: Path
    role: str  # "train" | "validation"
    detection: Detection | None
    examples: int = 0
    bytes: int = 0
    has_bom: bool = False


@dataclass
class ValidationReport:
    files: list[FileReport]
    findings: list[Finding]  # the kept findings (up to 20 per rule and file), sorted by file and line
    counts: dict[str, int]  # every occurrence, per rule
    errors: int
    warnings: int
    targets: list[str]
    counter: str = ""
    exact: bool = False
    scans: dict[str, ScanResult] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    def summary(self) -> list[Finding]:
        """Kept findings plus one line per file and rule whose further occurrences were not kept."""
        more = []
        for report, result in zip(self.files, self.scans.values(), strict=True):
            kept = result.findings.kept
            for rule, n in sorted(result.findings.counts.items()):
                if n > (shown := sum(f.rule == rule for f in kept)):
                    file = next((f.file for f in kept if f.rule == rule), str(report.path))
                    more.append(finding(rule, file, None, f"{n - shown:,} more like this"))
        return self.findings + more


def _repeats(values: array[int]) -> Iterator[tuple[int, int]]:
    """(index, index of its first occurrence) for every value seen before, in sorted order. numpy, when present,
    sorts in about 17 bytes per example (and ~40 per repeat) and loops only over the repeats; else a sorted list."""
    try:
        import numpy as np
    except ImportError:
        first_index, previous = 0, None
        for index in sorted(range(len(values)), key=values.__getitem__):
            if values[index] != previous:
                first_index, previous = index, values[index]
            else:
                yield index, first_index
        return
    prints = np.frombuffer(values, dtype=np.uint64)
    order = np.argsort(prints, kind="stable")
    ordered = prints[order]
    same = ordered[1:] == ordered[:-1]  # same[k]: sorted position k + 1 repeats position k
    del ordered
    repeats = np.flatnonzero(same) + 1
    if not len(repeats):
        return
    firsts = np.flatnonzero(np.diff(same.astype(np.int8), prepend=0) == 1)  # where each run of equals starts
    group = firsts[np.searchsorted(firsts, repeats, side="right") - 1]
    yield from zip(order[repeats].tolist(), order[group].tolist(), strict=True)


def duplicate_findings(result: ScanResult, file: str, findings: Findings) -> None:
    """`duplicate_example` for each example whose fingerprint an earlier example already had."""
    lines = result.example_lines
    for index, first_index in _repeats(result.fingerprints):
        if findings.wants("duplicate_example"):
            message = f"same example as line {lines[first_index]}"
            findings.add(finding("duplicate_example", file, lines[index], message))
        else:
            findings.add_uncounted("duplicate_example", 1)


def overlap_findings(train: ScanResult, validation: ScanResult, file: str, findings: Findings) -> None:
    seen = set(train.fingerprints)
    for fp, line in zip(validation.fingerprints, validation.example_lines, strict=True):
        if fp not in seen:
            continue
        if findings.wants("train_validation_overlap"):
            findings.add(finding("train_validation_overlap", file, line, "this example is also in the training file"))
        else:
            findings.add_uncounted("train_validation_overlap", 1)


def token_limit_findings(
    result: ScanResult, file: str, targets: Sequence[str], model: str | None, findings: Findings
) -> None:
    for target in targets:
        cap, _ = example_token_cap(target, model)
        if cap is None:
            continue
        for n, line in zip(result.token_counts, result.example_lines, strict=True):
            if n <= cap:
                continue
            if not findings.wants("too_many_tokens"):
                findings.add_uncounted("too_many_tokens", 1)
                continue
            message = f"{n:,} tokens; {target} trains on at most {cap:,} and truncates the rest"
            findings.add(finding("too_many_tokens", file, line, message))


def analyze(
    path: Path,
    *,
    role: str = "train",
    targets: Sequence[str] = (),
    model: str | None = None,
    fmt: str = "auto",
    mapping: dict[str, str] | None = None,
    export_to: str | None = None,
    out_dir: Path | None = None,
    workers: int | None = None,
    suffix: str | None = None,
    count_tokens: bool = True,
    progress: Progress | None = None,
) -> tuple[FileReport, ScanResult]:
    """Detect, scan and apply the whole-file rules to one file; findings are in the returned scan."""
    path = Path(path)
    file = str(path)
    targets = tuple(packs.normalize(t) for t in targets)
    if not path.exists():
        result = ScanResult()
        result.findings.add(finding("file.not_found", file, None, f"{path} does not exist"))
        return FileReport(path, role, None), result
    detection = detect(path, fmt, mapping)
    report = FileReport(path, role, detection, bytes=data_size(path))
    if not detection.format:
        result = ScanResult()
        message = f"{detection.reason}; none matches a known format (map columns with --columns FIELD=COLUMN)"
        result.findings.add(finding("format.unknown", file, None, message))
        return report, result
    plan = ScanPlan(
        path=path,
        container=detection.container,
        fmt=detection.format,
        display=file,
        mapping=dict(mapping or {}),
        targets=targets,
        export_to=export_to,
        model=model,
        provider=targets[0] if targets else None,
        count_tokens=count_tokens,
    )
    result = scan(plan, out_dir=out_dir, workers=workers, progress=progress)
    findings = result.findings
    if result.records == 0 and not findings.errors:
        findings.add(finding("file.empty", file, None))
    duplicate_findings(result, file, findings)
    if count_tokens:
        token_limit_findings(result, file, targets, model, findings)
    for target in targets:
        problems = packs.file_checks(
            target,
            examples=result.examples,
            size=report.bytes,
            has_bom=result.has_bom,
            validation=role == "validation",
            suffix=suffix,
        )
        for rule, message in problems:
            findings.add(finding(rule, file, None, message))
    report.examples, report.has_bom = result.examples, result.has_bom
    return report, result


def validate(
    train: Path,
    *,
    validation: Path | None = None,
    targets: Sequence[str] = (),
    model: str | None = None,
    fmt: str = "auto",
    columns: str | dict[str, str] | None = None,
    suffix: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ValidationReport:
    """Everything wrong with a training (and validation) file, for every platform in `targets`. `progress` is
    called with the bytes scanned as the scan goes (of both files)."""
    mapping = parse_mapping(columns)
    common: dict[str, Any] = {
        "targets": targets,
        "model": model,
        "fmt": fmt,
        "mapping": mapping,
        "workers": workers,
        "progress": progress,
    }
    files, scans = [], {}
    report, result = analyze(Path(train), role="train", suffix=suffix, **common)
    files.append(report)
    scans["train"] = result
    if validation is not None:
        val_report, val_result = analyze(Path(validation), role="validation", **common)
        overlap_findings(result, val_result, str(validation), val_result.findings)
        files.append(val_report)
        scans["validation"] = val_result
    total = Findings(keep=sys.maxsize)  # each file keeps its own first findings of a rule: none dropped here
    for scanned in scans.values():
        total.extend(scanned.findings)
    return ValidationReport(
        files=files,
        findings=total.sorted(),
        counts=dict(total.counts),
        errors=total.errors,
        warnings=total.warnings,
        targets=[packs.normalize(t) for t in targets],
        counter=result.counter,
        exact=result.exact,
        scans=scans,
    )


def validate_for(
    path: Path,
    provider: str,
    *,
    validation: Path | None = None,
    model: str | None = None,
    fmt: str = "auto",
) -> tuple[list[Finding], DatasetStats | None]:
    """Errors and warnings that matter before uploading to `provider` (info-level findings left out), and the
    training file's stats from the same pass (None when it could not be read). `plan()` turns the findings into
    Problems (errors block submit, warnings do not) and estimates the cost from the stats."""
    target = packs.normalize(provider)
    targets = [target] if target in packs.PACKS else []
    report = validate(path, validation=validation, targets=targets, model=model, fmt=fmt)
    found = [f for f in report.summary() if f.severity != "info"]
    train = report.files[0]
    if train.detection is None or not train.detection.format:
        return found, None
    return found, DatasetStats.of(report.scans["train"], bytes=train.bytes, format=train.detection.format, model=model)
