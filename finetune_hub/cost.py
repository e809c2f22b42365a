"""Cost: the estimate before a job, the running cost during it, and the actual cost after it.

Every figure comes from the catalog (`pricing.py`) and the billing rules here. No adapter module and no
SDK is imported, so every platform can be estimated whether or not its extra is installed; adapters'
`estimate` and `actual_cost` delegate to `estimate` and `actual_cost` below.

Two kinds of bill:
- per token (OpenAI, Azure OpenAI, Vertex): billed tokens (each platform's rule, epochs included) × price;
- per unit of time (SageMaker instance-hours, OpenAI RFT hours, local GPU-hours at $0): a runtime predicted
  from the tokens to process, the GPU throughput table and the model's size, plus billed start-up time.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from finetune_hub.errors import ConfigError, FthError
from finetune_hub.pricing import Catalog, PriceRow, base_model, retirement_problems
from finetune_hub.pricing import today as pricing_today
from finetune_hub.records import CostEstimate, JobEvent, JobResult, JobStatus, utcnow
from local_backend.config import TrainConfig  # stdlib only: the trainer's defaults, no torch

if TYPE_CHECKING:
    from finetune_hub.data import DatasetStats
    from finetune_hub.data.billing import BilledTokens
    from finetune_hub.job import FineTuneJob, JobState
    from finetune_hub.spec import FineTuneSpec

TOKEN_UNIT = "1M tokens"
#: LoRA training FLOPs per token per parameter: forward 2N + activation gradients 2N (local-training.md §4)
LORA_FLOPS_PER_PARAMETER = 4.0
#: Azure `training_type` spellings ("globalstandard", "developerTier", ...) → the names Azure and catalog rows use
AZURE_TRAINING_TYPES = MappingProxyType(
    {"standard": "Standard", "globalstandard": "GlobalStandard", "developer": "Developer"}
)


def azure_training_type_name(value: str) -> str:
    """Azure's docs spell it "globalstandard", "developerTier", "GlobalStandard": any of them, as Azure names it."""
    key = value.replace("_", "").replace("-", "").lower().removesuffix("tier")
    return AZURE_TRAINING_TYPES.get(key, value)


@dataclass(frozen=True)
class Throughput:
    """How fast a job is predicted to process tokens on the hardware it is priced by."""

    gpu: str
    gpus: int
    parameters: float
    tokens_per_second: float
    assumptions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlatformEstimate:
    """One row of `fth estimate`: an estimate, or why there is none."""

    provider: str
    base_model: str | None
    estimate: CostEstimate | None
    error: str | None = None  # why there is no estimate, or why it cannot be used (see `retired`)
    warnings: list[str] = field(default_factory=list)
    retired: bool = False  # a cutoff or shutdown date has passed: `fth submit` refuses the job

    @property
    def usable(self) -> bool:
        """Priced, and nothing (such as a passed shutdown date) stops the job being submitted."""
        return self.estimate is not None and self.error is None


# -- what a job is priced by ---------------------------------------------------------------------------


def priced_item(provider: str, spec: FineTuneSpec, catalog: Catalog) -> tuple[str, int]:
    """The catalog key the price is looked up by (model, instance type or GPU) and how many are billed."""
    platform = catalog.platform(provider)
    settings = spec.settings_for(provider)
    if _token_mode(provider, spec, catalog):
        return f"{settings['mode']}:{spec.base_model_for(provider)}", 1
    if platform.priced_by == "instance":
        instance = settings.get("instance_type") or platform.default
        if not instance:
            raise ConfigError(f"{provider}: no instance type", hint=f"set providers.{provider}.instance_type")
        return str(instance), int(settings.get("instance_count") or 1)
    if platform.priced_by == "gpu":  # your own GPUs: which kind is the catalog's `default` (override it there)
        return str(platform.default or "H100"), int(settings.get("gpus") or 1)
    if (tiered := _tiered(provider, spec)) and (row := catalog.price(provider, tiered)):
        own = catalog.price(provider, spec.base_model_for(provider))
        if row.origin == "user" or own is None or own.origin == "shipped":  # (your own price for the model wins
            return tiered, 1  # over a shipped tier row derived from the shipped price) "Developer:gpt-4.1-..."
    return spec.base_model_for(provider), 1


def azure_training_type(provider: str, spec: FineTuneSpec) -> str | None:
    """The spec's Azure `training_type`, spelt as catalog rows spell it; None elsewhere or where unset."""
    value = spec.settings_for(provider).get("training_type") if provider == "azure_openai" else None
    return azure_training_type_name(value) if isinstance(value, str) else None


def _tiered(provider: str, spec: FineTuneSpec) -> str | None:
    """The key of the training type's own rows ("Developer:<base model>"), where a type is set."""
    tier = azure_training_type(provider, spec)
    return f"{tier}:{base_model(spec.base_model_for(provider))}" if tier else None


def _price_row(provider: str, item: str, catalog: Catalog) -> PriceRow:
    row = catalog.price(provider, item)
    if row is None:
        raise ConfigError(
            f"no {provider} price for '{item}' in the catalog",
            hint="`fth prices` lists the known rows; add one to $FTH_HOME/catalog.yaml (docs/cost.md)",
        )
    return row


def free(provider: str, spec: FineTuneSpec, catalog: Catalog | None = None) -> bool:
    """Whether the catalog prices this job at $0 (your own GPUs, unless you priced them): no budget to break."""
    catalog = catalog or Catalog.load()
    try:
        return _price_row(provider, priced_item(provider, spec, catalog)[0], catalog).usd == 0
    except FthError:  # no price row: not known to be free
        return False


# -- billed tokens -------------------------------------------------------------------------------------


def billed(provider: str, spec: FineTuneSpec, stats: DatasetStats, catalog: Catalog) -> BilledTokens:
    """Tokens the platform bills (per-token platforms) or trains on (time-billed ones), epochs included,
    by the data layer's per-platform rules (per-example caps, OpenAI's automatic epochs)."""
    from finetune_hub.data.billing import billed_tokens

    time_billed = catalog.platform(provider).priced_by != "model" and not _token_mode(provider, spec, catalog)
    cut = spec.hyperparameters.max_seq_length or TrainConfig.max_seq_length  # (the trainer's default)
    bill = billed_tokens(
        stats,
        provider,
        model=spec.base_model_for(provider),
        epochs=spec.hyperparameters.epochs,
        max_tokens_per_example=cut if time_billed else None,
        time_billed=time_billed,
    )
    if not time_billed:
        return bill
    why = "the spec's max_seq_length" if spec.hyperparameters.max_seq_length else "the trainer's default max_seq_length"
    note = f"examples over {cut:,} tokens are cut to {cut:,} ({why}): {bill.capped_examples:,} of them"
    return replace(bill, assumptions=[note, *bill.assumptions])


def _tier_notes(provider: str, spec: FineTuneSpec, item: str) -> list[str]:
    """What the estimate assumes about Azure's training type where the catalog has no row of its own for it."""
    if provider != "azure_openai":
        return []
    tier = azure_training_type(provider, spec)
    if tier is None:
        return ["training_type not set: priced at the Global Standard rate (the catalog's Azure rows)"]
    if item.startswith(f"{tier}:") or tier == "GlobalStandard":
        return []
    if tier == "Developer":
        return ["training_type Developer: priced by the model's own row (the catalog has no Developer row for it,"
                " or your row for the model is used as you set it); add a 'Developer:<model>' row"]  # fmt: skip
    if tier == "Standard":  # regional: Microsoft gives only Global's discount off it, no price
        return [
            "training_type Standard (regional) is priced at the Global Standard rate, a lower bound: Microsoft "
            "puts Global Standard 10-30% below regional (add a 'Standard:<model>' row with your price)"
        ]
    return [f"training_type {tier}: no '{tier}:<model>' row in the catalog; priced at the Global Standard rate"]


def _token_mode(provider: str, spec: FineTuneSpec, catalog: Catalog) -> bool:
    return spec.settings_for(provider).get("mode") in catalog.platform(provider).token_modes


def _counted(stats: DatasetStats) -> str:
    how = "exact" if stats.exact else "approximate"
    return f"{stats.tokens:,} tokens in {stats.examples:,} examples ({how} count: {stats.counter})"


# -- runtime -------------------------------------------------------------------------------------------

_SIZE = re.compile(r"^(?:(\d+)x)?(\d+(?:\.\d+)?)([bm])$", re.IGNORECASE)


def _safetensors_parameters(folder: Path) -> float | None:
    """Sum of tensor sizes from the safetensors headers (read without loading any weights)."""
    total = 0
    files = sorted(folder.glob("*.safetensors"))
    for path in files:
        with open(path, "rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(length))
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info["shape"]:
                    count *= dim
                total += count
    return float(total) if files else None


def model_parameters(model: str, catalog: Catalog) -> tuple[float, str]:
    """The base model's parameter count and where it came from: a catalog row, the safetensors headers of a
    local folder, or a size in the id ("Llama-3.2-1B", "Qwen2.5-0.5B", "SmolLM2-135M", "Mixtral-8x7B")."""
    if row := catalog.parameters(model):
        return float(row.parameters), f"{model}: {row.parameters / 1e9:.2f}B parameters (catalog)"
    folder = Path(model).expanduser()
    if folder.is_dir() and (counted := _safetensors_parameters(folder)):
        return counted, f"{model}: {counted / 1e9:.3f}B parameters (safetensors headers)"
    sizes = [m for part in reversed(re.split(r"[-_/@:]", model)) if (m := _SIZE.match(part))]
    if sizes:  # a size in billions wins: "Qwen2.5-7B-Instruct-1M" is 7B parameters with a 1M-token context
        match = min(sizes, key=lambda m: m.group(3).lower() != "b")
        experts = int(match.group(1) or 1)
        scale = 1e9 if match.group(3).lower() == "b" else 1e6
        size = experts * float(match.group(2)) * scale
        return size, f"{model}: {size / 1e9:.2f}B parameters (from the model id)"
    raise ConfigError(
        f"cannot tell the size of '{model}' to predict its runtime",
        hint="add `models: [{model: '" + model + "', parameters: 7000000000}]` to $FTH_HOME/catalog.yaml",
    )


def throughput(provider: str, item: str, count: int, model: str, catalog: Catalog) -> Throughput:
    """Predicted training tokens/s for `model` on the GPUs behind `item` (an instance type or a GPU name)."""
    platform = catalog.platform(provider)
    instance = catalog.instance(provider, item) if platform.priced_by == "instance" else None
    if platform.priced_by == "instance" and instance is None:
        raise ConfigError(
            f"{provider}: the catalog does not say which GPUs a {item} has",
            hint="add `instances: [{provider: ..., instance: ..., gpu: A10G, gpus: 1}]` to $FTH_HOME/catalog.yaml",
        )
    gpu_name, gpus = (instance.gpu, instance.gpus * count) if instance else (item, count)
    gpu = catalog.gpu(gpu_name)
    if gpu is None:
        raise ConfigError(
            f"no throughput row for GPU '{gpu_name}'",
            hint="known GPUs: " + ", ".join(g.gpu for g in catalog.gpus) + "; or add a `gpus:` row",
        )
    parameters, sized = model_parameters(model, catalog)
    one = gpu.mfu * gpu.peak_tflops * 1e12 / (LORA_FLOPS_PER_PARAMETER * parameters)
    speed = one * (1 + (gpus - 1) * platform.multi_gpu_efficiency)
    notes = [
        sized,
        f"{gpus} × {gpu.gpu}: {gpu.peak_tflops:g} TFLOP/s peak at {gpu.mfu:.0%} utilisation, "
        f"{LORA_FLOPS_PER_PARAMETER:g} FLOPs per parameter per token (LoRA) → {speed:,.0f} tokens/s"
        + (f" ({platform.multi_gpu_efficiency:.0%} scaling per extra GPU)" if gpus > 1 else ""),
    ]
    if not gpu.verified:
        notes.append(f"{gpu.gpu} throughput figure not verified ({gpu.source})")
    return Throughput(gpu.gpu, gpus, parameters, speed, notes)


# -- the estimate ------------------------------------------------------------------------------------


def estimate(provider: str, spec: FineTuneSpec, stats: DatasetStats, *, catalog: Catalog | None = None) -> CostEstimate:
    """What a job would cost on `provider`, from the dataset's token counts and the catalog."""
    catalog = catalog or Catalog.load()
    item, count = priced_item(provider, spec, catalog)
    row = _price_row(provider, item, catalog)
    bill = billed(provider, spec, stats, catalog)
    epochs, tokens = bill.epochs, bill.billed
    hosting = catalog.price(provider, _tiered(provider, spec) or spec.base_model_for(provider), kind="hosting")
    notes = [_counted(stats), *bill.assumptions, *([] if bill.epochs_auto else [f"{epochs} epochs (from the spec)"])]
    notes += _tier_notes(provider, spec, item)
    if hosting and hosting.usd:
        notes.append(f"keeping the model deployed costs ${hosting.usd:,.2f}/{hosting.unit} ({hosting.note or ''})")
    elif hosting:
        notes.append(f"keeping the model deployed: no hourly fee ({hosting.note or ''})")
    whose = f"your {catalog.user_file}" if row.origin == "user" else "the shipped catalog"
    notes.append(f"priced by the {provider} row '{row.model}' ({row.kind}, {whose})")
    notes += [row.note] if row.note else []
    notes += [] if row.verified else [f"price not verified against {row.source}"]
    runtime: float | None = None
    if row.unit == TOKEN_UNIT:
        quantity = tokens / 1e6
        notes.insert(1, f"billed tokens = {bill.per_epoch:,} per epoch × {epochs} epochs = {tokens:,}")
    else:
        runtime, how = _runtime(provider, spec, item, count, tokens, catalog, row)
        quantity = runtime * count
        notes[1:1] = [f"tokens to process = {bill.per_epoch:,} per epoch × {epochs} epochs = {tokens:,}", *how]
    return CostEstimate(
        provider=provider,
        model=item,
        quantity=quantity,
        unit=row.unit,
        unit_price_usd=row.usd,
        total_usd=quantity * row.usd,
        as_of=row.as_of,
        source=row.source,
        verified=row.verified,
        assumptions=notes,
        epochs=epochs,
        billed_tokens=tokens,
        runtime_hours=runtime,
        hosting_usd_per_hour=hosting.usd if hosting else None,
    )


def _runtime(
    provider: str, spec: FineTuneSpec, item: str, count: int, tokens: int, catalog: Catalog, row: PriceRow
) -> tuple[float, list[str]]:
    """Predicted billed hours (per instance) of a time-billed job, and how they were worked out."""
    if row.unit not in ("hour", "instance-hour"):
        raise ConfigError(f"catalog row for {provider} {item}: unknown unit '{row.unit}'")
    platform = catalog.platform(provider)
    if platform.priced_by == "model":  # e.g. OpenAI RFT: hours on the platform's own, unnamed hardware
        raise FthError(
            f"{provider} {item} is billed per hour of training on the platform's own hardware, which cannot "
            "be predicted from the data",
            hint="set budget.max_usd (with budget.auto_cancel) to cap it",
        )
    speed = throughput(provider, item, count, spec.base_model_for(provider), catalog)
    hours = tokens / speed.tokens_per_second / 3600 + platform.overhead_minutes / 60
    how = f"runtime = {tokens:,} / {speed.tokens_per_second:,.0f} tokens/s + {platform.overhead_minutes:g} min"
    notes = [*speed.assumptions, how + f" start-up = {hours:.2f} h" + (f" × {count}" if count > 1 else "")]
    if spec.settings_for(provider).get("spot"):
        notes.append("spot capacity: this is the on-demand price, an upper bound; the actual cost uses billed time")
    return hours, notes


def estimate_many(
    spec: FineTuneSpec,
    providers: list[str],
    *,
    catalog: Catalog | None = None,
    today: dt.date | None = None,
) -> list[PlatformEstimate]:
    """An estimate (or the reason there is none) per platform, cheapest first; failures last."""
    from finetune_hub.job import training_stats

    catalog = catalog or Catalog.load()
    today = today or pricing_today()
    counted: dict[str, DatasetStats] = {}
    rows = []
    for provider in providers:
        model: str | None = None
        try:
            check_settings(provider, spec)
            model = spec.base_model_for(provider)
            if model not in counted:
                counted[model] = training_stats(spec, model)
            if provider in catalog.providers():
                found = estimate(provider, spec, counted[model], catalog=catalog)
            else:  # a third-party adapter prices itself (importing it may need its SDK)
                from finetune_hub import registry

                found = registry.load(provider)(spec).estimate(counted[model])
            problems = retirement_problems(catalog, provider, model, today)
            errors = [msg for level, msg in problems if level == "error"]  # `fth submit` refuses these
            warnings = [msg for level, msg in problems if level != "error"]
            error = "\n".join(errors) or None
            rows.append(PlatformEstimate(provider, model, found, error, warnings, retired=bool(errors)))
        except FthError as exc:
            rows.append(PlatformEstimate(provider, model, None, error=str(exc)))
    # usable estimates cheapest first, then those of retired models, then the platforms with none
    return sorted(rows, key=lambda r: (not r.usable, r.estimate is None, r.estimate.total_usd if r.estimate else 0.0))


def check_settings(provider: str, spec: FineTuneSpec) -> None:
    """The spec's settings block for `provider`, checked as submit checks it: a misspelt `instance_type` would
    otherwise price the default instance. Skipped where the adapter's SDK is not installed."""
    from finetune_hub import registry
    from finetune_hub.errors import MissingDependency, ProviderRetired

    if not spec.settings_for(provider):
        return
    try:
        adapter = registry.load(provider)
    except (MissingDependency, ProviderRetired):
        return
    adapter.parse_settings(spec)


def estimable_providers(catalog: Catalog | None = None) -> list[str]:
    """Every platform that has prices in the catalog or an adapter in the registry (gradient is gone)."""
    from finetune_hub import registry

    catalog = catalog or Catalog.load()
    return list(dict.fromkeys([*catalog.providers(), *sorted(registry.known())]))


#: the smallest amount `money` shows (4 decimals under a cent); below it a nonzero cost reads "<$0.0001"
_SMALLEST = 0.0001


def money(value: float | None) -> str:
    """Dollars, to the cent, or to 4 decimals under a cent; "—" when unknown."""
    if value is None:
        return "—"
    sign, size = "-" if value < 0 else "", abs(value)
    if 0 < size < _SMALLEST / 2:  # would print as $0.0000, which reads as free
        return f"{sign}<$0.0001"
    return f"{sign}${size:,.4f}" if 0 < size < 0.01 else f"{sign}${size:,.2f}"


def describe(est: CostEstimate) -> str:
    """One line: "$1.23 (0.41 M tokens × $3.00/1M tokens, prices as of 2025-06-01)"."""
    qty = f"{est.quantity:,.3f}M tokens" if est.unit == TOKEN_UNIT else f"{est.quantity:,.2f} {est.unit}s"
    return f"{money(est.total_usd)} ({qty} × ${est.unit_price_usd:,.2f}/{est.unit}, prices as of {est.as_of})"


# -- after and during the job ------------------------------------------------------------------------


def actual_cost(
    provider: str, spec: FineTuneSpec, result: JobResult, *, catalog: Catalog | None = None
) -> float | None:
    """What a finished job cost, from what the platform reported (trained tokens or billable seconds);
    None where the platform reported neither or the catalog has no price."""
    catalog = catalog or Catalog.load()
    try:
        item, count = priced_item(provider, spec, catalog)
    except FthError:
        return None
    row = catalog.price(provider, item)
    if row is None:
        return None
    if row.usd == 0:
        return 0.0
    if row.unit == TOKEN_UNIT and result.trained_tokens is not None:
        return result.trained_tokens / 1e6 * row.usd
    if row.unit in ("hour", "instance-hour") and result.billable_seconds is not None:
        # SageMaker's BillableTimeInSeconds is per instance (managed spot already lowers it)
        return result.billable_seconds / 3600 * count * row.usd
    return None


def difference(estimated: float | None, actual: float | None) -> str:
    """The actual cost against the estimate ("+$0.12, +8%"), or "" when either is unknown or they agree."""
    if estimated is None or actual is None or abs(actual - estimated) < _SMALLEST / 2:  # agree as shown
        return ""
    delta = actual - estimated
    pct = f", {delta / estimated:+.0%}" if estimated else ""
    return f"{'+' if delta >= 0 else '-'}{money(abs(delta))}{pct}"


def running_cost(job: FineTuneJob, state: JobState, *, now: dt.datetime | None = None) -> float | None:
    """What the job has cost so far: the time since it started running × the hourly price on time-billed
    platforms, and the reported progress × the estimate wherever progress is reported (the larger wins)."""
    if job.record is None or job.store is None:
        return None
    catalog = Catalog.load()
    found: list[float] = []
    if state.progress is not None and job.record.estimated_usd is not None:
        found.append(state.progress * job.record.estimated_usd)
    try:
        item, count = priced_item(job.provider, job.spec, catalog)
    except FthError:
        item, count = "", 1
    row = catalog.price(job.provider, item) if item else None
    started = next((at for status, _, at in job.store.history(job.record.id) if status is JobStatus.RUNNING), None)
    if row and row.unit in ("hour", "instance-hour") and started:
        hours = ((now or utcnow()) - dt.datetime.fromisoformat(started)).total_seconds() / 3600
        found.append(hours * count * row.usd)
    return max(found) if found else None


def enforce_budget(job: FineTuneJob, state: JobState) -> JobState:
    """With `budget.auto_cancel`, cancel a running job whose running cost has passed `budget.max_usd`."""
    from finetune_hub.records import Capability

    limit = job.spec.budget.max_usd
    if not job.spec.budget.auto_cancel or limit is None or state.status.terminal or job.record is None:
        return state
    if state.status is JobStatus.CANCELLING or not job.supports(Capability.CANCEL):
        return state
    spent = running_cost(job, state)
    if spent is None or spent <= limit:
        return state
    message = f"auto-cancel: running cost ${spent:,.2f} passed the budget of ${limit:,.2f}"
    if job.store is not None:
        job.store.add_events(
            job.record.id, [JobEvent(utcnow(), message, level="warn", id=f"fth-budget-{job.record.id}")]
        )
    with job.changing():
        cancelled = job.retrying(job.cancel)
    return replace(cancelled, error=cancelled.error or message)
