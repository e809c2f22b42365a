"""The comparison as one self-contained HTML page: tables, loss curves and a cost-versus-quality chart as
inline SVG. No script, stylesheet, font or image is fetched, so it opens offline and can be mailed."""

from __future__ import annotations

import math
from html import escape

from finetune_hub.compare import Comparison
from finetune_hub.report.common import (
    SUMMARY_COLUMNS,
    best,
    eval_columns,
    eval_row,
    summary_row,
)
from finetune_hub.report.svg import Dot, Series, color, line_chart, scatter_chart

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;
color:#222;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4}td:first-child{white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#666}.verdict{background:#eef6ee;padding:.5rem .75rem;border-left:4px solid #009E73}
.error{color:#b00}figure{margin:1rem 0}details{margin:.5rem 0}pre{white-space:pre-wrap;margin:0}
"""
_NUMERIC = {"wall time", "estimated", "actual", "vs estimate", "train loss", "valid loss", "answered", "failed", "cost"}


def _table(columns: list[str], rows: list[list[str]], numeric: set[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(v)}</td>' if c in numeric else f"<td>{escape(v)}</td>"
            for c, v in zip(columns, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def loss_chart(comparison: Comparison) -> str:
    series = []
    for i, job in enumerate(comparison.jobs):
        for name, dashed in (("train_loss", False), ("valid_loss", True)):
            # NaN and infinities cannot be drawn (a diverged run): plot the finite part of the curve
            if points := [(x, y) for x, y in job.curves.get(name, []) if math.isfinite(y)]:
                label = f"{job.id} {job.provider} {'valid' if dashed else 'train'}"
                series.append(Series(label, points, color(i), dashed))
    return line_chart(series, title="Loss (solid: train, dashed: validation)", x_label="step", y_label="loss")


def cost_quality_charts(comparison: Comparison) -> list[str]:
    charts = []
    colors = {job.id: color(i) for i, job in enumerate(comparison.jobs)}
    for metric in comparison.metrics:
        dots = [
            Dot(f"{e.label} ({e.provider})", cost, e.scores[metric], colors.get(e.job_id, "#000"))
            for e in comparison.evaluations
            if not e.is_base and metric in e.scores and (cost := comparison.cost_of(e.job_id)) is not None
        ]
        if dots:
            charts.append(
                scatter_chart(
                    dots,
                    title=f"Cost versus quality ({metric})",
                    x_label="cost, USD (actual where known, else estimated)",
                    y_label=metric,
                )
            )
    return charts


def _answers(comparison: Comparison) -> str:
    shown = [e for e in comparison.evaluations if e.answers]
    if not shown:
        return ""
    by_line = [{a.line: a for a in e.answers} for e in shown]  # by position: two evaluations may share a label
    columns = ["line", "prompt", "reference", *(f"{e.label} ({e.provider})" if e.is_base else e.label for e in shown)]
    rows = []
    for p in comparison.prompts:
        cells = [str(p["line"]), p["prompt"], p["reference"]]
        for answers in by_line:
            a = answers.get(p["line"])
            cells.append("—" if a is None else (a.prediction if a.prediction is not None else f"error: {a.error}"))
        rows.append(cells)
    return (
        f"<details><summary>Answers to the {len(rows)} held-out prompts</summary>"
        f"{_table(columns, rows, {'line'})}</details>"
    )


def render(comparison: Comparison) -> str:
    parts = [
        "<h1>finetune-hub comparison</h1>",
        f'<p class="meta">generated {escape(comparison.created_at[:19].replace("T", " "))} UTC · '
        f"{len(comparison.jobs)} job(s)"
        + (f" · held-out prompts: {escape(comparison.eval_file)}" if comparison.eval_file else "")
        + "</p>",
    ]
    if verdict := best(comparison):
        parts.append(f'<p class="verdict">{escape(verdict)}</p>')
    parts.append("<h2>Jobs</h2>")
    parts.append(_table(list(SUMMARY_COLUMNS), [summary_row(j) for j in comparison.jobs], _NUMERIC))
    errors = [f"<li><b>{escape(j.id)}</b>: {escape(j.error)}</li>" for j in comparison.jobs if j.error]
    if errors:
        parts.append(f'<ul class="error">{"".join(errors)}</ul>')
    parts.append("<h2>Loss curves</h2>")
    chart = loss_chart(comparison)
    parts.append(f"<figure>{chart}</figure>" if chart else "<p>No job reported per-step losses.</p>")
    if comparison.evaluations:
        parts.append(f"<h2>Held-out evaluation ({escape(', '.join(comparison.metrics))})</h2>")
        rows = [eval_row(comparison, e) for e in comparison.evaluations]
        parts.append(_table(eval_columns(comparison), rows, _NUMERIC | set(comparison.metrics)))
        problems = [f"<li>{escape(e.label)}: {escape(e.error)}</li>" for e in comparison.evaluations if e.error]
        if problems:
            parts.append(f'<ul class="error">{"".join(problems)}</ul>')
        parts.append("<h2>Cost versus quality</h2>")
        charts = cost_quality_charts(comparison)
        parts += [f"<figure>{c}</figure>" for c in charts] or ["<p>No scored job with a known cost.</p>"]
        parts.append(_answers(comparison))
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>finetune-hub comparison</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
