"""Cost and comparison commands: prices, estimate, compare, rerun."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from finetune_hub.cli import EXIT_BAD_INPUT, EXIT_OK, add_json_flag, positive_int

if TYPE_CHECKING:
    from finetune_hub.cost import PlatformEstimate
    from finetune_hub.rerun import RerunPlan

_H = "finetune_hub.cli.cost:"


def register(sub: Any) -> None:
    p = sub.add_parser("prices", help="show the price and lifecycle catalog, with ages and unverified rows")
    p.add_argument("--provider", help="only this platform")
    p.add_argument("--stale-days", type=int, default=None, help="flag rows older than this (default 180)")
    p.add_argument("--verbose", "-v", action="store_true", help="show each row's source")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_prices")

    p = sub.add_parser("estimate", help="what a spec would cost on each platform, cheapest first (offline)")
    p.add_argument("spec", help="the spec file (YAML or TOML)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--provider", "-p", action="append", help="a platform (repeatable)")
    which.add_argument("--all", action="store_true", help="every platform (the default)")
    p.add_argument("--verbose", "-v", action="store_true", help="print every assumption under the table")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_estimate")

    p = sub.add_parser("compare", help="compare jobs: cost, time, losses, and held-out answers")
    p.add_argument("jobs", nargs="+", help="local ids, remote ids or id prefixes")
    p.add_argument("--eval", dest="eval_file", help="held-out chat JSONL: each model answers these prompts")
    p.add_argument(
        "--metric",
        "-m",
        action="append",
        help="exact, exact-ci, rouge-l, json-valid, json-match (repeatable; default: exact and rouge-l)",
    )
    p.add_argument("--base", action="store_true", help="also ask each job's base model")
    p.add_argument("--limit", type=positive_int, help="use only the first N held-out prompts")
    p.add_argument(
        "--model",
        action="append",
        metavar="JOB=NAME",
        help="ask NAME for JOB instead of its fine-tuned model id: an Azure deployment, a checkpoint (repeatable)",
    )
    p.add_argument(
        "--report", action="append", help="write a report: .html, .md or .json by suffix (repeatable; a folder: all)"
    )
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_compare")

    p = sub.add_parser("rerun", help="run a job's data and spec again on another platform")
    p.add_argument("job", help="local id, remote id or id prefix")
    p.add_argument("--provider", "-p", required=True, help="the platform to run on")
    p.add_argument("--base-model", help="the base model on the new platform (else the spec's entry for it)")
    p.add_argument("--dry-run", action="store_true", help="show the mapping and checks; send nothing")
    p.add_argument("--yes", "-y", action="store_true", help="submit even when the estimate is over budget")
    p.add_argument("--wait", action="store_true", help="wait for the new job to finish")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_rerun")


# -- prices ------------------------------------------------------------------------------------------


def cmd_prices(args: argparse.Namespace) -> int:

    from finetune_hub.errors import ConfigError
    from finetune_hub.pricing import STALE_AFTER_DAYS, Catalog
    from finetune_hub.pricing import today as pricing_today

    catalog = Catalog.load()
    known = {r.provider for r in catalog.prices} | {r.provider for r in catalog.lifecycle}
    if args.provider and args.provider not in known:
        raise ConfigError(f"the catalog has no rows for '{args.provider}'", hint="known: " + ", ".join(sorted(known)))
    today = pricing_today()
    stale_days = args.stale_days if args.stale_days is not None else STALE_AFTER_DAYS
    yours = {(r.provider, r.model, r.kind) for r in catalog.prices if r.origin == "user"}
    prices = [  # a shipped row your override replaces is not listed beside it
        r for r in catalog.prices
        if (not args.provider or r.provider == args.provider)
        and (r.origin == "user" or (r.provider, r.model, r.kind) not in yours)
    ]  # fmt: skip
    lifecycle = [r for r in catalog.lifecycle if not args.provider or r.provider == args.provider]
    if args.json:
        from dataclasses import asdict

        from finetune_hub.cli.output import print_json

        rows = [{**asdict(r), "age_days": r.age_days(today), "stale": r.stale(today, stale_days)} for r in prices]
        print_json({"prices": rows, "lifecycle": lifecycle, "user_file": catalog.user_file, "today": today})
        return EXIT_OK
    from rich.markup import escape
    from rich.table import Column, Table

    from finetune_hub.cli.output import console, too_wide

    table = Table(Column("platform", no_wrap=True), Column("model / instance", overflow="fold"),
                  Column("price", no_wrap=True), "as of (age)", "status", title="prices")  # fmt: skip
    for r in prices:
        flags = [] if r.verified else ["[yellow]unverified[/]"]
        flags += ["[red]stale[/]"] if r.stale(today, stale_days) else []
        flags += ["[cyan]yours[/]"] if r.origin == "user" else []
        age = r.age_days(today)
        unit = r.unit.replace("1M tokens", "1M tok").replace("instance-hour", "inst-h")
        cells = [
            r.provider,
            escape(r.model)
            + (" [dim](hosting)[/]" if r.kind == "hosting" else "")
            + (f"\n[dim]{escape(r.source)}[/]" if args.verbose else ""),
            f"${r.usd:,.2f}/{unit}",
            r.as_of + ("" if age is None else f" [dim]({age} d)[/]"),
            " ".join(flags) or "[green]verified[/]",
        ]
        table.add_row(*cells)
    out = console()
    if too_wide(out, table):
        for column in table.columns[3:]:  # two lines each: the width goes to the ids
            column.max_width, column.overflow = 10, "fold"
    out.print(table)
    events = Table("platform", Column("model", overflow="fold"), "event", "date", "in", title="lifecycle")
    for ev in sorted(lifecycle, key=lambda r: r.date):
        days = (ev.date - today).days
        when = f"[red]{-days} d ago[/]" if days <= 0 else f"{days} d"
        events.add_row(ev.provider, escape(ev.model), ev.event.replace("_", " "), str(ev.date), when)
    out.print(events)
    from finetune_hub.store import fth_home

    where = catalog.user_file or f"{fth_home() / 'catalog.yaml'} (none yet)"
    said = f"{len(prices)} price rows; rows older than {stale_days} days are stale; your overrides: {where}"
    out.print(f"[dim]{escape(said)}[/]")
    return EXIT_OK


# -- estimate ----------------------------------------------------------------------------------------


def _estimate_table(rows: list[PlatformEstimate], verbose: bool) -> None:
    from rich.markup import escape

    from finetune_hub.cli.output import console, fitted_table
    from finetune_hub.cost import money

    cells: list[list[str]] = []  # platform, priced by, epochs, billed tokens, runtime, price, total, as of
    for row in rows:
        e = row.estimate
        if e is None:
            cells.append([row.provider, escape(row.base_model or "—"), "", "", "", "", "[red]—[/]", ""])
            continue
        verified = "" if e.verified else " [yellow]?[/]"
        total = f"[bold]{money(e.total_usd)}[/]" if row.usable else f"[red strike]{money(e.total_usd)}[/] (retired)"
        cells.append([
            row.provider, escape(e.model), str(e.epochs or "—"),
            f"{e.billed_tokens:,}" if e.billed_tokens is not None else "—",
            "—" if e.runtime_hours is None else f"{e.runtime_hours:,.2f} h",
            f"${e.unit_price_usd:,.2f}/{e.unit}{verified}", total, e.as_of,
        ])  # fmt: skip
    out = console()
    headers = ("platform", "priced by", "epochs", "billed tokens", "runtime", "price", "total", "as of")
    table = fitted_table(out, headers, cells, pairs=[(0, 1), (3, 2), (5, 7), (6, 4)], fold=(0, 2), title="estimates")
    out.print(table)
    if any(r.estimate and not r.estimate.verified for r in rows):
        out.print("[dim]? = price not verified against the platform's page (`fth prices` lists sources)[/]")
    for row in rows:
        if row.error:
            out.print(f"[red]{row.provider}[/]: {escape(row.error)}")
        for warning in row.warnings:  # each names its platform and model already
            out.print(f"[yellow]warning[/]: {escape(warning)}")
        if verbose and row.estimate:
            out.print(f"[bold]{row.provider}[/] assumptions:")
            for note in row.estimate.assumptions:
                out.print(f"  - {escape(note)}")


def cmd_estimate(args: argparse.Namespace) -> int:
    from finetune_hub import cost, registry
    from finetune_hub.pricing import Catalog
    from finetune_hub.spec import FineTuneSpec

    spec = FineTuneSpec.load(args.spec)
    catalog = Catalog.load()
    providers = list(dict.fromkeys(args.provider)) if args.provider else cost.estimable_providers(catalog)
    for name in args.provider or []:
        if name not in catalog.providers():
            registry.info(name)  # an unknown name fails here with the known ones listed
    rows = cost.estimate_many(spec, providers, catalog=catalog)
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(rows)
    else:
        _estimate_table(rows, args.verbose)
    return EXIT_OK if any(r.usable for r in rows) else EXIT_BAD_INPUT


# -- compare -----------------------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from finetune_hub import report
    from finetune_hub.compare import compare

    # a bad report path fails here, before any model is asked (each answer is a paid request)
    for ref in args.report or []:
        report.format_of(Path(ref))
    from finetune_hub.errors import ConfigError

    if not args.eval_file and (args.metric or args.base or args.limit or args.model):
        raise ConfigError(
            "--metric, --base, --limit and --model are about answers: they need --eval FILE", hint="or leave them out"
        )
    models = {}
    for pair in args.model or []:
        job, _, name = pair.partition("=")
        if not job or not name:
            raise ConfigError(f"--model {pair!r}: give JOB=NAME", hint="e.g. --model 3f2a=my-deployment")
        models[job] = name
    comparison = compare(
        args.jobs,
        eval_file=Path(args.eval_file) if args.eval_file else None,
        metrics=args.metric or ["exact", "rouge-l"],
        include_base=args.base,
        limit=args.limit,
        models=models,
    )
    written = [report.write(comparison, Path(p)) for p in args.report or []]
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(comparison)
        return EXIT_OK
    from finetune_hub.cli.output import console
    from finetune_hub.report.table import show

    out = console()
    show(comparison, out)
    for path in written:
        out.print(f"report written: {path}")
    return EXIT_OK


# -- rerun -------------------------------------------------------------------------------------------


def _show_plan(plan: RerunPlan) -> None:
    from rich.markup import escape
    from rich.table import Column, Table

    from finetune_hub.cli.output import console, print_problems
    from finetune_hub.cost import describe

    out = console()
    title = f"{plan.source_id} ({plan.source_provider}) → {plan.provider}"
    table = Table(*(Column(name, overflow="fold") for name in ("field", "before", "after", "why")), title=title)
    for c in plan.changes:
        after = "[red]dropped[/]" if c.after is None else escape(str(c.after))
        table.add_row(c.field, escape(str(c.before)), after, escape(c.why))
    out.print(table)
    print_problems(plan.problems)
    if plan.estimate:
        out.print(f"estimate on {plan.provider}: {describe(plan.estimate)}")


def cmd_rerun(args: argparse.Namespace) -> int:
    from finetune_hub.rerun import plan_rerun, rerun

    if args.dry_run:
        plan = plan_rerun(args.job, args.provider, base_model=args.base_model, over_budget_ok=args.yes)
    else:
        plan = rerun(args.job, args.provider, base_model=args.base_model, over_budget_ok=args.yes)
    # a dry run creates no job: --wait has nothing to wait for, so the plan is the output
    awaited = plan.job_id if args.wait and not args.dry_run else None
    if args.json and awaited is None:
        from finetune_hub.cli.output import print_json

        print_json(plan)
    elif not args.json:
        from finetune_hub.cli.output import console

        _show_plan(plan)
        if plan.job_id:
            console().print(f"submitted [bold]{plan.job_id}[/] to {plan.provider} (remote id {plan.remote_id})")
        else:
            console().print("dry run: nothing was uploaded or created")
    if args.dry_run:
        return EXIT_BAD_INPUT if plan.errors else EXIT_OK
    if awaited is not None:
        from finetune_hub import api
        from finetune_hub.cli.jobs import _wait_and_report

        return _wait_and_report([api.open_job(awaited)], args, timeout=None, one=True)
    return EXIT_OK
