"""Output for humans (rich) and scripts (--json); errors go to stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from finetune_hub.data.scan import Progress
    from finetune_hub.errors import FthError
    from finetune_hub.records import Problem


def console(stderr: bool = False) -> Console:
    """rich output; into a pipe or a file, lines are not folded at 80 columns, so `file:line` findings stay one
    line each for grep (a terminal folds them at words)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # the reader stopped (`fth prices | head`): main() ends with 0, as it does
            self.quiet = True  # for plain prints (rich's own default exits 1)
            raise BrokenPipeError

    return _Console(stderr=stderr, highlight=False, soft_wrap=not (sys.stderr if stderr else sys.stdout).isatty())


def too_wide(out: Console, table: Table) -> bool:
    """True when `table` would have to cut or wrap cells to fit the terminal (an 80-column one, say)."""
    return out.measure(table, options=out.options.update_width(10_000)).maximum > out.width


def fitted_table(
    out: Console,
    headers: Sequence[str],
    rows: list[list[str]],
    pairs: Sequence[tuple[int, int]],
    *,
    fold: Collection[int] = (),
    title: str | None = None,
) -> Table:
    """A table of `headers` and `rows`; where it would not fit the terminal, the columns of each pair share one,
    the second value dimmed under the first, so that no value is cut short. `fold`: the pairs (by position) whose
    long values may wrap."""
    from rich.table import Column, Table

    table = Table(*headers, title=title)
    for row in rows:
        table.add_row(*row)
    if not too_wide(out, table):
        return table
    columns = [Column(f"{headers[a]}\n[dim]{headers[b]}[/]", overflow="fold" if i in fold else "ellipsis")
               for i, (a, b) in enumerate(pairs)]  # fmt: skip
    stacked = Table(*columns, title=title)
    for row in rows:
        stacked.add_row(*(f"{row[a]}\n[dim]{row[b]}[/]" for a, b in pairs))
    return stacked


def print_json(data: Any) -> None:
    from finetune_hub.records import to_json

    sys.stdout.write(to_json(data) + "\n")


def print_error(exc: FthError, *, as_json: bool = False) -> None:
    if as_json:
        payload = {"error": type(exc).__name__, "message": exc.message, "hint": exc.hint}
        json.dump(payload, sys.stderr)
        sys.stderr.write("\n")
        return
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]error:[/] {escape(exc.message)}")
    if exc.hint:
        err.print(f"  [dim]hint:[/] {escape(exc.hint)}")


def print_problems(problems: list[Problem], *, stderr: bool = False) -> None:
    """Problems found before submitting, each with its hint (on stderr where stdout carries --json)."""
    from rich.markup import escape

    out = console(stderr=stderr)
    for p in problems:
        color = "red" if p.severity == "error" else "yellow"
        out.print(f"[{color}]{p.severity}[/]: {escape(p.message)}" + (f" [dim]({escape(p.hint)})[/]" if p.hint else ""))


@contextmanager
def scan_progress(paths: list[str | None], *, quiet: bool) -> Iterator[Progress | None]:
    """A transient bar of the bytes scanned, on stderr, while datasets of 16 MB or more are read where a person
    watches (a terminal, no --json). Yields the callback for the data functions' `progress`, or None."""
    from finetune_hub.data.sources import data_size

    err = console(stderr=True)
    total = 0 if quiet or not err.is_terminal else sum(data_size(Path(p)) for p in paths if p and Path(p).exists())
    if total < 16 << 20:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    columns = (TextColumn("scanning"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("scan", total=total)
        yield lambda scanned: bar.advance(task, scanned)
