"""Dataset commands: validate, convert, stats. Heavy imports (tiktoken, pyarrow, numpy) happen inside the
handlers, through finetune_hub.data, only when a command runs."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from finetune_hub.cli import EXIT_BAD_INPUT, EXIT_OK, add_json_flag, positive_int

if TYPE_CHECKING:
    from finetune_hub.data import Finding

_H = "finetune_hub.cli.data:"
_TARGETS = ("openai", "azure_openai", "vertex", "sagemaker", "gradient", "local")  # data.exporters.TARGETS
_SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "dim"}


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="dataset: .jsonl, .json, .csv, .tsv, .parquet, .txt, or a `datasets` directory")
    p.add_argument("--format", default="auto", help="record format (default: detected; see docs/data.md)")
    p.add_argument("--columns", help="column mapping for tables, e.g. prompt=question,completion=answer")
    p.add_argument("--model", help="base model whose tokenizer counts tokens (a local folder for HF tokenizers)")
    p.add_argument("--workers", type=int, help="processes for large JSONL files (default: one per CPU)")


def _source(args: argparse.Namespace) -> dict[str, Any]:
    """The options `_source_args` adds, as the data functions' keywords."""
    return {"fmt": args.format, "columns": args.columns, "model": args.model, "workers": args.workers}


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a dataset for every problem, for each platform (exit 2 on errors)")
    _source_args(p)
    p.add_argument("--validation", help="validation file (also checked for overlap with the training data)")
    p.add_argument("--for", dest="targets", action="append", choices=_TARGETS, default=[], help="platform rules")
    p.add_argument("--suffix", help="model suffix to check against the platform's rules")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_validate")

    p = sub.add_parser("convert", help="write a dataset the way a platform reads it, with a report of changes")
    _source_args(p)
    p.add_argument("--to", required=True, choices=_TARGETS, help="target platform")
    p.add_argument("--output", "-o", required=True, help="output file")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_convert")

    p = sub.add_parser("stats", help="sizes, token distribution, roles and billed tokens of a dataset")
    _source_args(p)
    p.add_argument("--for", dest="targets", action="append", choices=_TARGETS, default=[], help="show billed tokens")
    p.add_argument("--epochs", type=positive_int, help="epochs for the billed-token estimate (default: the platform's)")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_stats")


def _print_findings(findings: list[Finding]) -> None:
    from rich.markup import escape

    from finetune_hub.cli.output import console

    out = console()
    for f in findings:
        style = _SEVERITY_STYLE.get(f.severity, "")
        out.print(
            f"{escape(f.location())}: [{style}]{f.severity}[/] [bold]{f.rule}[/] {escape(f.message)}"
            f"\n    [dim]fix:[/] {escape(f.fix)}"
        )


def cmd_validate(args: argparse.Namespace) -> int:
    from finetune_hub.cli.output import scan_progress
    from finetune_hub.data import validate
    from finetune_hub.data.findings import RULES
    from finetune_hub.errors import ConfigError

    if args.suffix is not None and "azure_openai" not in (args.targets or []):
        raise ConfigError("--suffix is checked against Azure OpenAI's rules only", hint="add --for azure_openai")
    with scan_progress([args.data, args.validation], quiet=args.json) as progress:
        report = validate(
            args.data,
            validation=args.validation,
            targets=args.targets,
            suffix=args.suffix,
            progress=progress,
            **_source(args),
        )
    code = EXIT_OK if report.ok else EXIT_BAD_INPUT
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(
            {
                "ok": report.ok,
                "errors": report.errors,
                "warnings": report.warnings,
                "targets": report.targets,
                "files": [
                    {
                        "path": str(f.path),
                        "role": f.role,
                        "detected": f.detection.describe() if f.detection else None,
                        "examples": f.examples,
                        "bytes": f.bytes,
                    }
                    for f in report.files
                ],
                "counts": report.counts,
                "findings": report.summary(),
                "token_counter": report.counter,
            }
        )
        return code
    from finetune_hub.cli.output import console

    out = console()
    for f in report.files:
        if f.detection:
            out.print(f"[dim]{f.path}: {f.detection.describe()}[/]")
    shown = report.summary()
    _print_findings([f for f in shown if f.severity != "info"])
    notes = sum(n for rule, n in report.counts.items() if RULES[rule].severity == "info")
    verdict = "[green]ok[/]" if report.ok else "[red]not usable[/]"
    platforms = ", ".join(report.targets) or "the OpenAI chat format"
    out.print(
        f"{verdict}: {report.errors:,} error(s), {report.warnings:,} warning(s)"
        + (f", {notes:,} note(s) (--json lists them)" if notes else "")
        + f" in {sum(f.examples for f in report.files):,} examples, checked for {platforms}"
    )
    return code


def cmd_convert(args: argparse.Namespace) -> int:
    from finetune_hub.cli.output import scan_progress
    from finetune_hub.data import ConversionError, convert

    try:
        with scan_progress([args.data], quiet=args.json) as progress:
            report = convert(args.data, to=args.to, out=args.output, progress=progress, **_source(args))
    except ConversionError as exc:
        if args.json:
            raise
        from rich.markup import escape

        _print_findings(exc.findings[:50])
        from finetune_hub.cli.output import console

        summary = exc.message.splitlines()[0].rstrip(":")
        console(stderr=True).print(f"[red]not converted[/]: {escape(summary)}; nothing was written")
        return EXIT_BAD_INPUT
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(report)
        return EXIT_OK
    from rich.markup import escape

    from finetune_hub.cli.output import console

    out = console()
    out.print(f"[dim]read {escape(report.detected)}[/]")
    out.print(f"wrote {report.examples:,} examples for {report.target} to [bold]{escape(str(report.out))}[/]")
    for change in report.changes:
        out.print(f"  [yellow]changed[/]: {escape(change)}")
    if report.warnings:
        _print_findings(report.warnings)
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from finetune_hub.cli.output import scan_progress
    from finetune_hub.data import stats
    from finetune_hub.data.billing import billed_tokens

    with scan_progress([args.data], quiet=args.json) as progress:
        result = stats(args.data, progress=progress, **_source(args))
    p10, p50, p90 = result.quantiles(0.1, 0.5, 0.9)
    billed = [billed_tokens(result, t, model=args.model, epochs=args.epochs) for t in args.targets]
    if args.json:
        from finetune_hub.cli.output import print_json

        payload = {k: v for k, v in vars(result).items() if k != "token_counts"}
        payload["tokens_per_example"] = {
            "min": min(result.token_counts, default=0),
            "p10": p10,
            "median": p50,
            "mean": result.tokens / result.examples if result.examples else 0,
            "p90": p90,
            "max": result.max_tokens,
        }
        payload["billed"] = billed
        print_json(payload)
        return EXIT_OK
    from rich.table import Table

    from finetune_hub.cli.output import console

    out = console()
    table = Table("measure", "value", title=f"{args.data} ({result.format})", show_header=False)
    mean = result.tokens / result.examples if result.examples else 0
    table.add_row("size", f"{result.bytes / 1e6:,.1f} MB")
    table.add_row("examples", f"{result.examples:,}")
    table.add_row("messages", f"{result.messages:,}")
    table.add_row("roles", ", ".join(f"{r} {n:,}" for r, n in sorted(result.role_counts.items())))
    table.add_row("tokens", f"{result.tokens:,} ({result.assistant_tokens:,} in trained assistant turns)")
    table.add_row(
        "tokens per example",
        f"min {min(result.token_counts, default=0):,} · p10 {p10:,} · median {p50:,} · mean {mean:,.0f} · "
        f"p90 {p90:,} · max {result.max_tokens:,}",
    )
    table.add_row("counted with", ("" if result.exact else "[yellow]") + result.counter)
    for b in billed:
        cap = f", {b.capped_examples:,} over the {b.cap:,}-token cap" if b.cap else ""
        table.add_row(f"billed on {b.provider}", f"{b.billed:,} tokens ({b.epochs} epochs{cap})")
    out.print(table)
    return EXIT_OK
