"""`DatasetStats`: what a streaming pass over a dataset learned (counts, token distribution, roles)."""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from finetune_hub.data.findings import ERROR

if TYPE_CHECKING:
    from finetune_hub.data.scan import Progress, ScanResult


#: the rules that mean a record was not read, or its tokens not counted: stats refuses to count around them
UNCOUNTABLE = frozenset(
    {
        "file.unreadable",
        "encoding.invalid_utf8",
        "encoding.utf16",
        "file.compressed",
        "encoding.lone_surrogate",
        "json.invalid",
        "format.column_missing",
        "tokens.template_error",
    }
)


@dataclass(frozen=True)
class DatasetStats:
    examples: int
    tokens: int  # summed over examples, as the counter sees them
    max_tokens: int
    exact: bool  # False when tokens were approximated
    counter: str  # which tokenizer (or approximation) counted, and how to get exact counts when approximate
    #: tokens of each example in file order (4 bytes each, so a million examples cost 4 MB); billing caps need it
    token_counts: array[int] = field(default_factory=lambda: array("I"))
    assistant_tokens: int = 0  # tokens in trained (assistant) turns
    messages: int = 0
    role_counts: dict[str, int] = field(default_factory=dict)
    bytes: int = 0
    format: str = "openai_chat"
    model: str | None = None

    @classmethod
    def of(cls, result: ScanResult, *, bytes: int, format: str, model: str | None) -> DatasetStats:
        """The stats a scan gathered."""
        counts = result.token_counts
        return cls(
            examples=result.examples,
            tokens=sum(counts),
            max_tokens=max(counts, default=0),
            exact=result.exact,
            counter=result.counter,
            token_counts=counts,
            assistant_tokens=result.trained_tokens,
            messages=result.messages,
            role_counts=dict(result.roles),
            bytes=bytes,
            format=format,
            model=model,
        )

    def quantiles(self, *qs: float) -> list[int]:
        """Token quantiles over examples (nearest rank); empty dataset gives zeros."""
        if not self.token_counts:
            return [0 for _ in qs]
        ordered = sorted(self.token_counts)
        last = len(ordered) - 1
        return [ordered[min(last, max(0, round(q * last)))] for q in qs]


def stats(
    path: Path,
    *,
    model: str | None = None,
    fmt: str = "auto",
    columns: str | dict[str, str] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> DatasetStats:
    """Counts, token distribution and roles of a dataset in one streaming pass (tokens as `model` sees them);
    `progress` is called with the bytes scanned as the scan goes."""
    from finetune_hub.data.formats import parse_mapping
    from finetune_hub.data.validation import analyze
    from finetune_hub.errors import DataError

    report, result = analyze(
        Path(path), model=model, fmt=fmt, mapping=parse_mapping(columns), workers=workers, progress=progress
    )
    if report.detection is None or not report.detection.format:
        blocking = result.findings.sorted()
        raise DataError(str(blocking[0]) if blocking else f"{path}: unreadable", hint="run `fth validate` on it")
    # counts that leave out what could not be read, used (another format, not an object) or counted would be
    # wrong without a word: refuse, as validate
    unread = sum(n for rule, n in result.findings.counts.items() if rule in UNCOUNTABLE)
    if left_out := max(unread, result.records - result.examples):
        found = result.findings.sorted()
        first = next((f for f in found if f.rule in UNCOUNTABLE), None) or next(f for f in found if f.severity == ERROR)
        raise DataError(
            f"{left_out:,} record(s) of {path} could not be read, used or counted; the first: {first}",
            hint=f"fix them and run stats again; `fth validate {path}` lists them all",
        )
    return DatasetStats.of(result, bytes=report.bytes, format=report.detection.format, model=model)
