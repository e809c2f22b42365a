"""The comparison as rich tables in the terminal."""

from __future__ import annotations

from typing import TYPE_CHECKING

from finetune_hub.compare import Comparison
from finetune_hub.report.common import SUMMARY_COLUMNS, best, eval_columns, eval_row, sparkline, summary_row

if TYPE_CHECKING:
    from rich.console import Console


def show(comparison: Comparison, console: Console) -> None:
    from rich.markup import escape
    from rich.table import Column, Table

    job_id = Column("job", no_wrap=True)
    jobs = Table(job_id, "platform / base model", "status", "time", "estimated / actual", "loss train / valid")
    jobs.title = "jobs"
    for job in comparison.jobs:
        row = dict(zip(SUMMARY_COLUMNS, summary_row(job), strict=True))
        curve = sparkline([v for _, v in job.curves.get("train_loss", [])], width=12)
        delta = f" ({row['vs estimate']})" if row["vs estimate"] != "—" else ""
        jobs.add_row(
            escape(job.id),
            escape(f"{job.provider}\n{job.base_model}"),
            escape(job.status),
            row["wall time"],
            f"{row['estimated']}\n{row['actual']}{delta}",
            f"{row['train loss']} / {row['valid loss']}\n{curve}",
        )
    console.print(jobs)
    for job in comparison.jobs:
        if job.error:
            console.print(f"[red]{escape(job.id)}[/]: {escape(job.error)}")
    if comparison.evaluations:
        scores = Table(*eval_columns(comparison), title=f"held-out evaluation: {escape(comparison.eval_file or '')}")
        for ev in comparison.evaluations:
            scores.add_row(*(escape(c) for c in eval_row(comparison, ev)))
        console.print(scores)
        for ev in comparison.evaluations:
            if ev.error:
                console.print(f"[yellow]{escape(ev.label)}[/]: {escape(ev.error)}")
    if verdict := best(comparison):
        console.print(f"[bold green]{escape(verdict)}[/]")
