"""Output for humans (rich) and scripts (--json); errors go to stderr."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from finetune_hub.records import to_plain

if TYPE_CHECKING:
    from rich.console import Console

    from finetune_hub.errors import FthError
    from finetune_hub.records import Problem


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_json(data: Any) -> None:
    json.dump(to_plain(data), sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


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


def print_problems(problems: list[Problem]) -> None:
    """Problems found before submitting, each with its hint."""
    from rich.markup import escape

    out = console()
    for p in problems:
        color = "red" if p.severity == "error" else "yellow"
        out.print(f"[{color}]{p.severity}[/]: {escape(p.message)}" + (f" [dim]({escape(p.hint)})[/]" if p.hint else ""))
