"""The Python API; the CLI is a thin layer over these functions."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from finetune_hub import registry
from finetune_hub.errors import ConfigError, FthError
from finetune_hub.job import FineTuneJob, JobState, training_stats
from finetune_hub.records import Capability, CostEstimate, JobStatus, Problem
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobRecord, JobStore


@dataclass(frozen=True)
class SubmitPlan:
    """What a submit would do, worked out before anything is sent."""

    provider: str
    base_model: str
    problems: list[Problem]
    estimate: CostEstimate | None
    hashes: tuple[str, str] | None = None  # (spec, data) content hashes, worked out once when a store was given

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def make_job(provider: str, spec: FineTuneSpec, *, store: JobStore | None = None, client: Any = None) -> FineTuneJob:
    return registry.load(provider)(spec, client=client, store=store)


def open_job(ref: str, *, store: JobStore | None = None, client: Any = None) -> FineTuneJob:
    """A handle on a job from the store, by local id, remote id or id prefix."""
    store = store or JobStore()
    record = store.get(ref)
    return registry.load(record.provider)(stored_spec(record), client=client, store=store, record=record)


def stored_spec(record: JobRecord) -> FineTuneSpec:
    """The spec a job was submitted with; a clear error where this version's rules refuse it."""
    try:
        return FineTuneSpec.from_dict(record.spec, source=f"job {record.id}'s stored spec")
    except ConfigError as exc:  # stored by a version with other rules
        raise ConfigError(
            exc.message,
            hint=f"the finetune-hub version that submitted {record.id} can still follow it; `fth list` shows it",
        ) from None


def plan(
    spec: FineTuneSpec,
    provider: str,
    *,
    job: FineTuneJob | None = None,
    over_budget_ok: bool = False,
    store: JobStore | None = None,
) -> SubmitPlan:
    """Check the spec and data for `provider` and estimate the cost, offline; an estimate over `budget.max_usd`
    is an error unless `over_budget_ok` (`--yes`), so a dry run says what the submit will do. With `store`, a
    job of the same spec and data still unfinished there is a warning (a second submit trains and bills twice)."""
    from finetune_hub import data
    from finetune_hub.cost import free, money
    from finetune_hub.pricing import Catalog

    job = job or make_job(provider, spec)
    catalog = Catalog.load()  # once: the cutoffs, the estimate and the budget all read it
    problems = job.check() + job.lifecycle_problems(catalog)  # every platform: the catalog's cutoffs
    if spec.method == "sft" or job.supports(Capability.DPO):  # else check() has said the method is unsupported
        problems += job.data_kind_problems()
    findings, stats = data.validate_for(
        spec.data.train,
        provider,
        validation=spec.data.validation,
        model=job.base_model(),  # (no suffix: the adapter's check() has the platform's suffix rules)
        fmt=spec.data.format,
    )
    problems += [Problem(f.severity, f"{f.location()}: [{f.rule}] {f.message}", f.fix) for f in findings]
    estimate = None
    if stats is not None and all(p.severity != "error" for p in problems):
        try:
            if spec.data.validation_split is not None:  # the job trains on the rest
                stats = training_stats(spec, job.base_model())
            estimate = job.estimate(stats, catalog)
        except FthError as exc:
            problems.append(Problem("warning", f"no cost estimate: {exc.message}", exc.hint))
    limit = spec.budget.max_usd
    unchecked = limit is not None and estimate is None and not over_budget_ok
    if unchecked and all(p.severity != "error" for p in problems) and not free(provider, spec, catalog):
        problems.append(
            Problem(
                "error",
                f"budget.max_usd is {money(limit)}, but with no cost estimate on {provider} it cannot be checked",
                "make the estimate possible (the warning above says how), or pass --yes to submit anyway",
            )
        )
    if estimate and limit is not None and estimate.total_usd > limit and not over_budget_ok:
        problems.append(
            Problem(
                "error",
                f"estimated cost {money(estimate.total_usd)} on {provider} is over the budget of {money(limit)}",
                "raise budget.max_usd in the spec, or pass --yes to submit anyway",
            )
        )
    hashes = None
    if store is not None:
        hashes = (spec.content_hash(), data.content_hash(spec.data.train, spec.data.validation))
        if twins := store.unfinished_twins(provider, *hashes):
            shown = ", ".join(f"{r.id} ({r.status.value})" for r in twins)
            why = f"the same spec and data are already on {provider}: {shown}; this submits another, billed again"
            problems.append(Problem("warning", why, "if it is a mistake, `fth cancel` the new one (its id comes next)"))
    return SubmitPlan(provider, job.base_model(), problems, estimate, hashes)


def submit(
    spec: FineTuneSpec,
    provider: str,
    *,
    store: JobStore | None = None,
    client: Any = None,
    over_budget_ok: bool = False,
    checked: SubmitPlan | None = None,
) -> FineTuneJob:
    """Check, estimate, record, upload and create the job; safe to call again after a crash. `checked`: the
    `plan()` of this spec on this provider, when the caller has already made it (with the same `over_budget_ok`:
    the budget check is part of the plan)."""
    from finetune_hub import data

    store = store or JobStore()
    job = make_job(provider, spec, store=store, client=client)
    checked = checked or plan(spec, provider, job=job, over_budget_ok=over_budget_ok, store=store)
    if errors := checked.errors:
        lines = [p.message + (f" ({p.hint})" if p.hint else "") for p in errors]
        raise ConfigError(
            f"{provider}: {len(errors)} problem(s) before submitting:\n  " + "\n  ".join(lines),
            hint="nothing was uploaded; fix these and submit again",
        )
    cost = checked.estimate
    spec_hash, data_hash = checked.hashes or (
        spec.content_hash(),
        data.content_hash(spec.data.train, spec.data.validation),
    )
    account, estimated = job.account_id(), cost.total_usd if cost else None
    # The same request on the same account, whose earlier submit got no answer, keeps its idempotency key: a job
    # the platform did create is found, never made twice (also after `fth cancel` cleared the record).
    record = store.find_unsent(provider, spec_hash, data_hash, account)
    fresh = record is None
    if record is None:
        record = store.create_job(
            provider=provider,
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_hash=spec_hash,
            data_hash=data_hash,
            account=account,
            estimated_usd=estimated,
        )
    else:
        store.update(record.id, status=JobStatus.CREATED, estimated_usd=estimated, error=None)
        record = store.get(record.id)
    job.record = record
    try:
        prepared = job.prepare()
    except FthError as exc:  # no create was asked: a new record would only sit in `fth list` as "created"
        if not (fresh and store.forget_unsent(record.id)):
            store.update(record.id, error=str(exc))
        raise
    try:
        remote_id = job.retrying(lambda: job.submit(prepared, record.idempotency_key))
    except FthError as exc:
        store.update(record.id, error=str(exc))
        raise

    def queued_unless_cancelled(now: dict[str, Any]) -> dict[str, Any]:
        """Decided under the store's write lock: `fth cancel` may have come while the platform was asked."""
        cancelled = now["status"] == JobStatus.CANCELLED.value
        return {"remote_id": remote_id, "status": JobStatus.CANCELLED if cancelled else JobStatus.QUEUED}

    cancelled = store.update(record.id, queued_unless_cancelled)["status"] is JobStatus.CANCELLED
    job.record = store.get(record.id)
    try:
        if cancelled:  # the user's cancel, carried out on the job just created
            control(job, "cancel")
        else:
            job.sync()
    except FthError as exc:  # the job exists; `fth status` (or `fth cancel` again) catches up
        if cancelled:
            store.update(record.id, status=JobStatus.QUEUED, error=f"the cancel asked during submit failed: {exc}")
    return job


#: the `detail` of what `control` returns when it asked nothing: the job had finished
LEFT_ALONE = "nothing asked: the job had finished"


def control(job: FineTuneJob, verb: str) -> JobState:
    """cancel, pause or resume: ask the platform, then record what it says. A job whose submit got no answer is
    cancelled in the store only (its record stays reusable: see `submit`). A job that has finished, as the
    platform says now, is left alone the same way on every platform (some refuse with an error, some say
    nothing); one that failed or was cancelled may still resume where the platform allows it."""
    if job.unsent and job.store is not None and job.record is not None:
        if verb != "cancel":
            raise ConfigError(f"{job.local_id} has no answer from the platform: nothing to {verb}")
        # Cleared in the store while no remote id is recorded; a submit still waiting on the platform sees this
        # and cancels the job it creates. If its answer was recorded first, the job is cancelled on the platform.
        cleared = job.store.update(
            job.record.id, lambda now: {"status": JobStatus.CANCELLED} if now["remote_id"] is None else {}
        )
        job.record = job.store.get(job.record.id)
        if cleared:
            return job.sync()
    try:  # the stored status may be stale: the platform's, now (its status is all this needs)
        now = None if job.unsent else job.retrying(job.refresh)
    except FthError:
        now = None  # the platform's answer to the request decides
    if now is not None and now.status.terminal and (verb != "resume" or now.status is JobStatus.SUCCEEDED):
        with contextlib.suppress(FthError):  # left alone: the store catches up (status, result, cost)
            now = job.sync()
        if verb == "resume":
            raise ConfigError(f"{job.local_id or job.remote_id} already succeeded: there is nothing to resume")
        return replace(now, detail=LEFT_ALONE)
    state: JobState = job.retrying(getattr(job, verb))
    if job.store is not None and job.record is not None:  # the platform's own answer, even if a later read fails
        said: dict[str, Any] = {"status": state.status, "native_status": state.native}
        if state.error:
            said["error"] = state.error
        job.store.update(job.record.id, None, **said)
    with contextlib.suppress(FthError):  # the request was made; `fth status` catches up with the rest
        job.sync()
    return state
