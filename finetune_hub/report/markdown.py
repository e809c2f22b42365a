"""The comparison as Markdown: the same tables as the HTML, with loss curves as sparklines."""

from __future__ import annotations

from finetune_hub.compare import Comparison
from finetune_hub.report.common import SUMMARY_COLUMNS, best, eval_columns, eval_row, number, sparkline, summary_row


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def _table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def render(comparison: Comparison) -> str:
    lines = ["# finetune-hub comparison", ""]
    meta = f"Generated {comparison.created_at[:19].replace('T', ' ')} UTC, {len(comparison.jobs)} job(s)"
    lines += [meta + (f"; held-out prompts: `{comparison.eval_file}`." if comparison.eval_file else "."), ""]
    if verdict := best(comparison):
        lines += [f"**{verdict}**", ""]
    lines += ["## Jobs", "", *_table(list(SUMMARY_COLUMNS), [summary_row(j) for j in comparison.jobs]), ""]
    lines += [f"- `{j.id}`: {_cell(j.error)}" for j in comparison.jobs if j.error]
    curves = [
        [j.id, name, number(points[0][1]), number(points[-1][1]), str(len(points)), sparkline([v for _, v in points])]
        for j in comparison.jobs
        for name, points in j.curves.items()
    ]
    lines += ["", "## Loss curves", ""]
    if curves:
        lines += _table(["job", "curve", "first", "last", "points", "shape"], curves)
    else:
        lines.append("No job reported per-step losses.")
    if comparison.evaluations:
        lines += ["", f"## Held-out evaluation ({', '.join(comparison.metrics)})", ""]
        lines += _table(eval_columns(comparison), [eval_row(comparison, e) for e in comparison.evaluations])
        lines += [""] + [f"- {e.label}: {_cell(e.error)}" for e in comparison.evaluations if e.error]
    return "\n".join(lines).rstrip() + "\n"
