"""`fth`: the command line. Builds the parser from the command modules and imports a handler only
when its command runs, so `fth --help` loads no SDK, no pydantic, no rich."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Each module has `register(subparsers)`; handlers are "module:function" strings resolved on use.
COMMAND_MODULES = ("finetune_hub.cli.data", "finetune_hub.cli.jobs", "finetune_hub.cli.cost")

EXIT_OK, EXIT_JOB_FAILED, EXIT_BAD_INPUT, EXIT_PLATFORM, EXIT_TIMEOUT = 0, 1, 2, 3, 4


def build_parser() -> argparse.ArgumentParser:
    from finetune_hub import __version__

    parser = argparse.ArgumentParser(
        prog="fth",
        description="One dataset and one spec, sent to any fine-tuning platform, compared on cost and results.",
        epilog="Exit codes: 0 ok, 1 job failed, 2 bad input, 3 platform or auth error, 4 not finished (a wait "
        "found a job paused, or its --timeout ran out).",
    )
    parser.add_argument("--version", action="version", version=f"finetune-hub {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_OK
    module, _, func = handler.partition(":")
    from finetune_hub.errors import FthError

    try:
        return int(getattr(importlib.import_module(module), func)(args) or EXIT_OK)
    except FthError as exc:
        from finetune_hub.cli.output import print_error

        print_error(exc, as_json=getattr(args, "json", False))
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted (a job already submitted goes on: `fth status`, `fth wait JOB`)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader stopped (`fth logs | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return EXIT_OK


def positive_int(text: str) -> int:
    """An argparse type for counts that must be at least 1 (a bad one exits 2 before anything runs)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse type for durations that must be above 0 (a bad one exits 2 before anything runs)."""
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
    return value


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
