"""The columns every report format shows, in one place, as display strings."""

from __future__ import annotations

import math

from finetune_hub.compare import Comparison, Evaluation, JobSummary
from finetune_hub.cost import money

SUMMARY_COLUMNS = (
    "job",
    "platform",
    "base model",
    "status",
    "wall time",
    "estimated",
    "actual",
    "vs estimate",
    "train loss",
    "valid loss",
    "fine-tuned model",
)
SPARK = "▁▂▃▄▅▆▇█"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    minutes = seconds / 60
    return f"{minutes:.0f}m" if minutes < 120 else f"{minutes / 60:.1f}h"


def number(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def sparkline(values: list[float], width: int = 24) -> str:
    """A unicode sparkline of `values`, resampled to at most `width` characters; NaN and infinities (a
    diverged run) are left out, having no height."""
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return ""
    if len(values) > width:
        values = [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    return "".join(SPARK[round((v - lo) / span * (len(SPARK) - 1))] for v in values)


def vs_estimate(job: JobSummary) -> str:
    from finetune_hub.cost import difference

    return difference(job.estimated_usd, job.actual_usd) or "—"


def summary_row(job: JobSummary) -> list[str]:
    return [
        job.id,
        job.provider,
        job.base_model,
        job.status,
        duration(job.wall_seconds),
        money(job.estimated_usd),
        money(job.actual_usd),
        vs_estimate(job),
        number(job.final.get("train_loss")),
        number(job.final.get("valid_loss")),
        job.model or "—",
    ]


def eval_columns(comparison: Comparison) -> list[str]:
    return ["model", "platform", *comparison.metrics, "answered", "failed", "cost"]


def eval_row(comparison: Comparison, ev: Evaluation) -> list[str]:
    cost = "—" if ev.is_base else money(comparison.cost_of(ev.job_id))
    scores = [number(ev.scores.get(m), 3) for m in comparison.metrics]
    return [ev.label, ev.provider, *scores, str(ev.answered), str(ev.failed), cost]


def best(comparison: Comparison) -> str | None:
    """A one-line verdict: the best-scoring fine-tuned model on the first metric, and the cheapest of those
    within 0.01 of it. A job of unknown cost is never called cheapest: it may have cost anything."""
    if not comparison.metrics:
        return None
    metric = comparison.metrics[0]
    scored = [e for e in comparison.evaluations if not e.is_base and metric in e.scores]
    tuned = [e for e in scored if not e.failed]  # a mean over the few prompts a model answered is no match
    missing = len(scored) - len(tuned)
    left_out = f" ({missing} left out: prompts they did not answer)" if missing else ""
    if not tuned:
        return f"no verdict: every model left prompts unanswered{left_out}" if scored else None
    top = max(e.scores[metric] for e in tuned)
    close = [e for e in tuned if e.scores[metric] >= top - 0.01]
    priced = [(cost, e) for e in close if (cost := comparison.cost_of(e.job_id)) is not None]
    if not priced:
        leader = max(close, key=lambda e: e.scores[metric])
        return (
            f"best {metric}: {top:.3f} ({leader.label} on {leader.provider}); no job within 0.01 of it has a known cost"
            + left_out
        )
    cost, cheapest = min(priced, key=lambda pair: pair[0])
    unknown = len(close) - len(priced)
    return (
        f"best {metric}: {top:.3f}; cheapest within 0.01 of it: {cheapest.label} on {cheapest.provider} "
        f"({money(cost)}, {metric} {cheapest.scores[metric]:.3f})"
        + (f"; {unknown} more of unknown cost" if unknown else "")
        + left_out
    )
