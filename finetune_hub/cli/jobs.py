"""Job commands: providers, submit, status, list, logs, wait, cancel, pause, resume."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING, Any

from finetune_hub.cli import (
    EXIT_BAD_INPUT,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_PLATFORM,
    EXIT_TIMEOUT,
    add_json_flag,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from finetune_hub.job import FineTuneJob
    from finetune_hub.store import JobRecord, JobStore

_H = "finetune_hub.cli.jobs:"


def register(sub: Any) -> None:
    p = sub.add_parser("providers", help="list the platforms and what each supports")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_providers")

    p = sub.add_parser("submit", help="check, upload and start a fine-tuning job")
    p.add_argument("spec", help="the spec file (YAML or TOML)")
    p.add_argument("--provider", "-p", required=True, help="platform to run on (see `fth providers`)")
    p.add_argument("--dry-run", action="store_true", help="check and estimate only; send nothing")
    p.add_argument("--yes", "-y", action="store_true", help="submit even when the estimate is over budget")
    p.add_argument("--wait", action="store_true", help="wait for the job to finish, with progress")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_submit")

    p = sub.add_parser("status", help="refresh and show a job (or every unfinished job)")
    p.add_argument("job", nargs="?", help="local id, remote id or id prefix")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_status")

    p = sub.add_parser("list", help="list the jobs in the local store (no network; local runs read afresh)")
    p.add_argument("--provider", help="only this platform")
    p.add_argument("--status", help="only this status")
    p.add_argument("--limit", type=positive_int, default=50)
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_list")

    p = sub.add_parser("logs", help="print a job's events or logs")
    p.add_argument("job")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.add_argument("--json", action="store_true", help="one JSON object per line: {job, line} (JSON Lines)")
    p.set_defaults(handler=_H + "cmd_logs")

    p = sub.add_parser(
        "wait", help="wait for jobs to finish; exit 1 if any failed, 4 if one is paused or --timeout ran out"
    )
    p.add_argument("jobs", nargs="+")
    p.add_argument("--timeout", type=positive_float, help="give up after this many seconds")
    p.add_argument("--interval", type=positive_float, default=2.0, help="first polling interval in seconds")
    add_json_flag(p)
    p.set_defaults(handler=_H + "cmd_wait")

    for verb in ("cancel", "pause", "resume"):
        p = sub.add_parser(verb, help=f"{verb} a job")
        p.add_argument("job")
        add_json_flag(p)
        p.set_defaults(handler=_H + "cmd_control", verb=verb)


def cmd_providers(args: argparse.Namespace) -> int:
    from finetune_hub import registry
    from finetune_hub.errors import MissingDependency
    from finetune_hub.records import Capability

    rows: list[dict[str, Any]] = []
    for name, entry in sorted(registry.known().items()):
        try:
            cls = registry.load(name)
        except MissingDependency as exc:
            rows.append({"name": name, "installed": False, "install": exc.hint, "summary": entry.summary})
            continue
        caps = {c.value: cls.capabilities.get(c, "not declared") for c in Capability}
        rows.append(
            {
                "name": name,
                "installed": True,
                "summary": entry.summary,
                "supported": [c for c, why in caps.items() if why is None],
                "unsupported": {c: why for c, why in caps.items() if why is not None},
            }
        )
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(rows)
        return EXIT_OK
    from rich.table import Table

    from finetune_hub.cli.output import console

    table = Table("provider", "supports", "does not support", title="fine-tuning providers")
    for row in rows:
        if not row["installed"]:
            table.add_row(row["name"], f"[yellow]not installed[/]: {row['install']}", "")
            continue
        table.add_row(
            row["name"], ", ".join(row["supported"]), "\n".join(f"{c}: {why}" for c, why in row["unsupported"].items())
        )
    console().print(table)
    return EXIT_OK


def cmd_submit(args: argparse.Namespace) -> int:
    from finetune_hub import api
    from finetune_hub.cli.output import console, print_json, print_problems
    from finetune_hub.spec import FineTuneSpec
    from finetune_hub.store import JobStore

    spec = FineTuneSpec.load(args.spec)
    store = JobStore()
    planned = api.plan(spec, args.provider, over_budget_ok=args.yes, store=store)
    if args.dry_run:
        if args.json:
            print_json(planned)
        else:
            print_problems(planned.problems)
            out = console()
            if planned.estimate:
                from finetune_hub.cost import describe

                out.print(f"{args.provider} {planned.base_model}: estimated {describe(planned.estimate)}")
            out.print("dry run: nothing was uploaded or created")
        return EXIT_BAD_INPUT if planned.errors else EXIT_OK
    # on stderr, as errors are: the warnings too (a retirement date near, a setting the platform ignores)
    print_problems(planned.problems, stderr=True)
    if planned.errors:
        console(stderr=True).print("nothing was uploaded; fix these and submit again")
        return EXIT_BAD_INPUT
    job = api.submit(spec, args.provider, store=store, over_budget_ok=args.yes, checked=planned)
    if not args.json:
        console().print(f"submitted [bold]{job.local_id}[/] to {args.provider} (remote id {job.remote_id})")
    if args.wait:
        return _wait_and_report([job], args, timeout=None, one=True)
    if args.json:
        print_json(job.to_record())
    return EXIT_OK


def _records_table(records: list[JobRecord], empty: str = "no jobs") -> None:
    from rich.markup import escape

    from finetune_hub.cli.output import console, fitted_table
    from finetune_hub.cost import money

    if not records:  # a table of headers alone reads as a fault
        console().print(f"[dim]{empty}[/]")
        return

    cells: list[list[str]] = []  # id, provider, name, status, model, estimated, actual, created
    for r in records:
        color = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(r.status.value, "cyan")
        cells.append([
            r.id, r.provider, escape(r.name), f"[{color}]{r.status.value}[/]", escape(r.model or "—"),
            money(r.estimated_usd), _actual(r), r.created_at[:16].replace("T", " "),
        ])  # fmt: skip
    out = console()  # stacked where narrow; ids are never cut (they are what every command takes)
    headers = ("id", "provider", "name", "status", "model", "estimated", "actual", "created")
    table = fitted_table(out, headers, cells, pairs=[(0, 2), (1, 3), (4, 7), (5, 6)], fold=(0, 2, 3))
    out.print(table)


def _actual(record: JobRecord) -> str:
    """The actual cost, with its difference from the estimate: "$1.20 (+$0.20, +20%)"."""
    from finetune_hub.cost import difference, money

    delta = difference(record.estimated_usd, record.actual_usd)
    return money(record.actual_usd) + (f" ({delta})" if delta else "")


def _refresh_offline(store: JobStore) -> None:
    """Unfinished jobs whose platform is this machine (local runs) are read afresh: a look at files, no
    network, so the list shows where they are now, not where the last `fth status` saw them."""
    from finetune_hub import api, registry
    from finetune_hub.errors import FthError

    for name in (name for name, info in registry.BUILTIN.items() if info.offline):
        for record in store.list_jobs(provider=name, limit=1000):
            if not record.status.terminal:
                with contextlib.suppress(FthError):
                    api.open_job(record.id, store=store).sync()


def cmd_list(args: argparse.Namespace) -> int:
    from finetune_hub import registry
    from finetune_hub.errors import ConfigError
    from finetune_hub.records import JobStatus
    from finetune_hub.store import JobStore

    statuses = [s.value for s in JobStatus]
    if args.status is not None and args.status not in statuses:
        raise ConfigError(f"no status '{args.status}'", hint="one of " + ", ".join(statuses))
    if args.provider is not None:
        registry.check_name(args.provider)  # a typo; a retired platform's jobs can still be listed
    store = JobStore()
    _refresh_offline(store)
    records = store.list_jobs(provider=args.provider, status=args.status, limit=args.limit)
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(records)
    else:
        _records_table(records)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from finetune_hub import api
    from finetune_hub.errors import FthError
    from finetune_hub.job import job_row
    from finetune_hub.store import JobStore

    store = JobStore()
    refs = [args.job] if args.job else [r.id for r in store.list_jobs(limit=1000) if not r.status.terminal]
    rows: list[dict[str, Any]] = []
    records: list[JobRecord] = []
    unreachable: dict[str, str] = {}  # job id → why it could not be refreshed
    for ref in refs:
        job = None
        try:
            job = api.open_job(ref, store=store)
            job.sync()
        except FthError as exc:
            if args.job:  # the one job asked about: its error is the answer
                raise
            unreachable[ref] = str(exc)  # one platform out of reach does not hide the other jobs
        record = job.record if job and job.record else store.get(ref)  # sync leaves job.record fresh
        records.append(record)
        rows.append(
            job.to_record() if job else job_row(record, provider=record.provider, name=record.name, base_model=None)
        )
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(rows[0] if args.job else [row | {"refresh_error": unreachable.get(row["id"])} for row in rows])
    else:
        from rich.markup import escape

        from finetune_hub.cli.output import console

        _records_table(records, empty="no unfinished jobs (`fth list` shows every job)")
        for r in records:
            if r.error:
                console().print(f"[red]{r.id}[/]: {escape(r.error)}")
        for ref, why in unreachable.items():
            console().print(f"[red]{ref}[/]: not refreshed: {escape(why)}")
    return EXIT_PLATFORM if unreachable else EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    import json

    from finetune_hub import api

    job = api.open_job(args.job)
    for line in job.logs(follow=args.follow):
        print(json.dumps({"job": job.local_id, "line": line}) if args.json else line, flush=True)
    return EXIT_OK


def _wait_and_report(
    jobs: list[FineTuneJob], args: argparse.Namespace, timeout: float | None, *, one: bool = False
) -> int:
    """Wait for `jobs`, then show each; `one`: the command made one job, so --json prints its record alone."""
    import time

    from finetune_hub.errors import WaitTimedOut
    from finetune_hub.job import Backoff
    from finetune_hub.records import JobStatus

    interval = getattr(args, "interval", 2.0)
    deadline = None if timeout is None else time.monotonic() + timeout  # for all the jobs together
    states, late = [], []
    for job in jobs:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            states.append(job.wait(timeout=left, progress=not args.json, backoff=Backoff(initial=interval)))
        except WaitTimedOut as exc:  # each job is still reported, as it is now
            states.append(exc.state)
            late.append(job.local_id)
    if late:
        import sys

        print(f"timed out after {timeout:g}s; still going: {', '.join(map(str, late))}", file=sys.stderr)
    if args.json:
        from finetune_hub.cli.output import print_json

        records = [job.to_record() for job in jobs]
        print_json(records[0] if one else records)
    else:
        from rich.markup import escape

        from finetune_hub.cli.output import console

        for job, state in zip(jobs, states, strict=True):
            line = f"{job.local_id}: {state.status.value}"
            if job.record and job.record.model:
                line += f" → {escape(job.record.model)}"
            if state.error:
                line += f" ({escape(state.error)})"
            console().print(line)
    if any(s.status.terminal and s.status is not JobStatus.SUCCEEDED for s in states):
        return EXIT_JOB_FAILED
    paused = [job.local_id for job, s in zip(jobs, states, strict=True) if s.status is JobStatus.PAUSED]
    if paused:
        import sys

        print(f"paused, so not finished: {', '.join(map(str, paused))} (`fth resume` goes on)", file=sys.stderr)
    return EXIT_TIMEOUT if late or paused else EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    from finetune_hub import api

    return _wait_and_report([api.open_job(ref) for ref in args.jobs], args, timeout=args.timeout)


def cmd_control(args: argparse.Namespace) -> int:
    """cancel, pause or resume: ask the platform, then record what it says."""
    from finetune_hub import api

    job = api.open_job(args.job)
    state = api.control(job, args.verb)
    if args.json:
        from finetune_hub.cli.output import print_json

        print_json(job.to_record())
    else:
        from finetune_hub.cli.output import console

        if state.detail == api.LEFT_ALONE:
            console().print(f"{job.local_id}: already {state.status.value}: nothing to {args.verb}")
        else:
            console().print(f"{job.local_id}: {args.verb} requested; now {state.status.value}")
    return EXIT_OK
