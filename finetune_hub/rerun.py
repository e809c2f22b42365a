"""`fth rerun JOB --provider Q`: the same data and spec, mapped to another platform, with a list of every
change and of everything that cannot carry over.

Mapping rules:
- the base model comes from the spec's entry for the target (or `base_model=`); there is no guessing of
  "equivalent" models across vendors;
- a hyperparameter the target cannot take (its adapter's capabilities say so, with the reason) is dropped;
- where the source spec left epochs or batch size to the platform ("auto"), the values the source platform
  picked (its job's resolved hyperparameters, when the adapter recorded them) are pinned, so both runs
  train alike; learning-rate multipliers are not pinned, being relative to each platform's own default;
- the target adapter's `check`, the data validation for the target and the estimate then run as for any
  submit; errors stop the rerun before anything is uploaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from finetune_hub.errors import ConfigError, DataError
from finetune_hub.records import Capability, CostEstimate, JobEvent, Problem, utcnow

if TYPE_CHECKING:
    from finetune_hub.spec import FineTuneSpec
    from finetune_hub.store import JobRecord, JobStore

# spec field (dotted path) → the capability the target needs to take it
_NEEDS = (
    ("hyperparameters.epochs", Capability.EPOCHS),
    ("hyperparameters.learning_rate", Capability.LEARNING_RATE),
    ("hyperparameters.learning_rate_multiplier", Capability.LEARNING_RATE_MULTIPLIER),
    ("hyperparameters.batch_size", Capability.BATCH_SIZE),
    ("seed", Capability.SEED),
    ("lora", Capability.LORA_RANK),
    ("data.validation", Capability.VALIDATION),
    ("data.validation_split", Capability.VALIDATION),
)
# canonical hyperparameter → names platforms report resolved values under (providers.md §6.2)
_RESOLVED_NAMES = {
    "epochs": ("n_epochs", "epochs", "epoch_count", "num_train_epochs", "epoch"),
    "batch_size": ("batch_size", "per_device_train_batch_size"),
}


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any
    why: str


@dataclass(frozen=True)
class RerunPlan:
    source_id: str
    source_provider: str
    provider: str
    base_model: str
    spec: dict[str, Any]  # the mapped spec, as submitted
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    estimate: CostEstimate | None = None
    job_id: str | None = None  # the new job, once created
    remote_id: str | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]


def _get(tree: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None  # type: ignore[assignment]
    return tree


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[last] = value


def _resolved(record: JobRecord) -> dict[str, Any]:
    """Hyperparameters the source platform picked, as its adapter recorded them in the result."""
    extra = (record.result or {}).get("extra") or {}
    found = extra.get("hyperparameters") or {}
    return found if isinstance(found, dict) else {}


def _check_data(record: JobRecord, spec: FineTuneSpec) -> None:
    from finetune_hub import data

    for path in (spec.data.train, spec.data.validation):
        if path is not None and not path.is_file():
            raise DataError(f"{path}: the data of job {record.id} is no longer there", hint="restore the file")
    if data.content_hash(spec.data.train, spec.data.validation) != record.data_hash:
        raise DataError(
            f"the data files of job {record.id} changed since it ran ({spec.data.train})",
            hint="rerun sends the same data; to train on the new data use `fth submit`",
        )


def plan_rerun(
    ref: str,
    provider: str,
    *,
    base_model: str | None = None,
    store: JobStore | None = None,
    over_budget_ok: bool = False,
) -> RerunPlan:
    """Map job `ref`'s spec to `provider` and check it there (the budget too, unless `over_budget_ok`); sends
    nothing."""
    from finetune_hub import api, registry
    from finetune_hub.spec import FineTuneSpec
    from finetune_hub.store import JobStore

    store = store or JobStore()
    record = store.get(ref)
    if provider == record.provider:
        raise ConfigError(f"job {record.id} already ran on {provider}", hint="pick another --provider")
    source = api.stored_spec(record)
    _check_data(record, source)
    target_cls = registry.load(provider)
    mapped = source.model_dump(mode="json")
    changes: list[Change] = []

    before_model = source.base_model_for(record.provider)
    explicit = base_model is not None
    if base_model is None:
        try:
            base_model = source.base_model_for(provider)
        except ConfigError:
            raise ConfigError(
                f"job {record.id}'s spec names no base model for {provider} (it trained {before_model})",
                hint=f"pass --base-model with a model id for {provider}",
            ) from None
    mapped["base_model"] = {**(source.base_model if isinstance(source.base_model, dict) else {}), provider: base_model}
    if isinstance(source.base_model, str):
        mapped["base_model"]["default"] = source.base_model
    why = "--base-model" if explicit else f"the spec's base model for {provider}"
    changes.append(Change("base_model", f"{record.provider}: {before_model}", f"{provider}: {base_model}", why))

    for dotted, capability in _NEEDS:
        value = _get(mapped, dotted)
        if value is not None and not target_cls.supports(capability):
            _set(mapped, dotted, None)
            reason = target_cls.capabilities.get(capability) or "not declared by the adapter"
            changes.append(Change(dotted, value, None, f"cannot carry over: {provider} {reason}"))

    multiplier = _get(mapped, "hyperparameters.learning_rate_multiplier")
    if multiplier is not None:
        note = f"kept, but it scales {provider}'s own default learning rate, not {record.provider}'s"
        changes.append(Change("hyperparameters.learning_rate_multiplier", multiplier, multiplier, note))

    picked = _resolved(record)
    for name, aliases in _RESOLVED_NAMES.items():
        dotted = f"hyperparameters.{name}"
        value = next((picked[a] for a in aliases if isinstance(picked.get(a), int)), None)
        capability = Capability.EPOCHS if name == "epochs" else Capability.BATCH_SIZE
        if _get(mapped, dotted) is None and value is not None and target_cls.supports(capability):
            _set(mapped, dotted, value)
            changes.append(Change(dotted, "auto", value, f"pinned to what {record.provider} picked for {record.id}"))

    if (suffix := mapped.get("suffix")) and (fitted := target_cls.fitted_suffix(suffix)) != suffix:
        changes.append(Change("suffix", suffix, fitted, f"{provider}'s rules for model-name suffixes"))
        mapped["suffix"] = fitted

    spec = FineTuneSpec.model_validate(mapped)
    checked = api.plan(spec, provider, over_budget_ok=over_budget_ok)
    return RerunPlan(
        source_id=record.id,
        source_provider=record.provider,
        provider=provider,
        base_model=base_model,
        spec=spec.model_dump(mode="json"),
        changes=changes,
        problems=checked.problems,
        estimate=checked.estimate,
    )


def rerun(
    ref: str,
    provider: str,
    *,
    base_model: str | None = None,
    store: JobStore | None = None,
    client: Any = None,
    over_budget_ok: bool = False,
) -> RerunPlan:
    """Create the mapped job on `provider` (through `api.submit`) and link the two jobs in their event logs."""
    from finetune_hub import api
    from finetune_hub.spec import FineTuneSpec
    from finetune_hub.store import JobStore

    store = store or JobStore()
    planned = plan_rerun(ref, provider, base_model=base_model, store=store, over_budget_ok=over_budget_ok)
    if planned.errors:
        lines = [p.message + (f" ({p.hint})" if p.hint else "") for p in planned.errors]
        raise ConfigError(
            f"job {planned.source_id} cannot run on {provider} as it is:\n  " + "\n  ".join(lines),
            hint="nothing was uploaded; `fth rerun --dry-run` shows the whole mapping",
        )
    checked = api.SubmitPlan(provider, planned.base_model, planned.problems, planned.estimate)
    spec = FineTuneSpec.model_validate(planned.spec)
    job = api.submit(spec, provider, store=store, client=client, over_budget_ok=over_budget_ok, checked=checked)
    assert job.record is not None  # submit always records the job
    summary = "; ".join(f"{c.field}: {c.before} → {c.after} ({c.why})" for c in planned.changes)
    now = utcnow()
    store.add_events(
        job.record.id,
        [JobEvent(now, f"rerun of {planned.source_id} ({planned.source_provider}): {summary}", id="fth-rerun-of")],
    )
    store.add_events(
        planned.source_id,
        [JobEvent(now, f"rerun on {provider} as {job.record.id}", id=f"fth-rerun-as-{job.record.id}")],
    )
    return replace(planned, job_id=job.record.id, remote_id=job.record.remote_id)
