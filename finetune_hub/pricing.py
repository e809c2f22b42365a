"""The dated, sourced price and lifecycle catalog (package data, plus the user's override file).

Besides prices and lifecycle dates it holds what time-billed platforms need to predict a runtime: GPU
throughput rows (datasheet peak × an assumed utilisation), which GPUs each instance type carries, and
per-platform defaults (what the price is keyed by, start-up overhead). `cost.py` does the arithmetic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from finetune_hub.errors import ConfigError, ProviderRetired

#: a price row older than this many days is flagged as stale by `fth prices`
STALE_AFTER_DAYS = 180


def today() -> dt.date:
    """The date prices and retirement rules are judged against; $FTH_TODAY (YYYY-MM-DD) pins it."""
    import os

    pinned = os.environ.get("FTH_TODAY")
    try:
        return dt.date.fromisoformat(pinned) if pinned else dt.date.today()
    except ValueError:
        raise ConfigError(f"FTH_TODAY={pinned!r} is not a date", hint="use YYYY-MM-DD") from None


def _age(as_of: str, today: dt.date) -> int | None:
    try:
        return (today - dt.date.fromisoformat(as_of)).days
    except ValueError:
        return None


@dataclass(frozen=True)
class PriceRow:
    provider: str
    model: str  # id, or prefix ending in "*"
    usd: float
    unit: str  # "1M tokens" | "hour" | "instance-hour"
    as_of: str
    source: str
    verified: bool
    note: str | None = None
    kind: str = "training"  # "training" | "hosting"
    origin: str = "shipped"  # "shipped" | "user" (from $FTH_HOME/catalog.yaml)

    def age_days(self, today: dt.date) -> int | None:
        return _age(self.as_of, today)

    def stale(self, today: dt.date, after_days: int = STALE_AFTER_DAYS) -> bool:
        age = self.age_days(today)
        return age is None or age > after_days


@dataclass(frozen=True)
class LifecycleRow:
    provider: str
    model: str
    event: str  # job_creation_cutoff | model_shutdown | training_retirement
    date: dt.date
    source: str
    verified: bool
    alternatives: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.date, dt.date):  # a quoted "2027-01-06" is text in YAML: compared, it would crash
            date = dt.date.fromisoformat(str(self.date))  # a ValueError for anything but YYYY-MM-DD
            object.__setattr__(self, "date", date)


@dataclass(frozen=True)
class GpuRow:
    """Training throughput of one GPU: tokens/s = mfu × peak_tflops·1e12 / (4 × parameters) for LoRA."""

    gpu: str
    peak_tflops: float  # dense bf16 (fp16 where the GPU has no bf16), from the datasheet
    mfu: float  # model FLOPs utilisation our trainer is assumed to reach
    source: str
    verified: bool
    note: str | None = None


@dataclass(frozen=True)
class InstanceRow:
    provider: str
    instance: str
    gpu: str
    gpus: int


@dataclass(frozen=True)
class ModelRow:
    """The parameter count of a base model whose id does not name its size (e.g. "gpt2")."""

    model: str  # id, or prefix ending in "*"
    parameters: float
    source: str | None = None


@dataclass(frozen=True)
class PlatformRow:
    """How a platform is priced: by the base model, an instance type, or the GPU it runs on."""

    provider: str
    priced_by: str  # "model" | "instance" | "gpu"
    default: str | None = None  # default instance type or GPU when the spec names none
    overhead_minutes: float = 0.0  # billed start-up time (instance launch, image and model download)
    multi_gpu_efficiency: float = 1.0  # scaling factor per extra GPU (data parallel)
    #: the settings' `mode` values priced per token by base model instead, e.g. SageMaker "serverless",
    #: looked up as "<mode>:<base model>"
    token_modes: list[str] = field(default_factory=list)
    note: str | None = None


def _matches(pattern: str, model: str) -> int:
    """Match length (higher is more specific), or -1."""
    if pattern.endswith("*"):
        return len(pattern) - 1 if model.startswith(pattern[:-1]) else -1
    return len(pattern) + 1 if model == pattern else -1


_MAY_BE_ZERO = frozenset({"usd", "overhead_minutes"})  # a free platform, no start-up time; the rest divide


def _numbers(row: Any) -> Any:
    """`row` after checking that its numeric fields hold numbers (a YAML `usd: $3.00` is text), none below 0,
    and none 0 that a runtime divides by (mfu, peak_tflops, parameters, gpus)."""
    for f in dataclasses.fields(row):
        value = getattr(row, f.name)
        if f.type not in ("float", "int"):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            wrong = "is not a number"
        elif value < 0 or (value == 0 and f.name not in _MAY_BE_ZERO):
            wrong = f"must be {'0 or more' if f.name in _MAY_BE_ZERO else 'above 0'}"
        else:
            continue
        named = ", ".join(str(getattr(row, k.name)) for k in dataclasses.fields(row)[:2])
        raise ValueError(f"{f.name} = {value!r} {wrong} (row {named})")
    return row


def _load_yaml(text: str) -> Any:
    """Safe YAML through libyaml where available: the catalog is read on every estimate."""
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _read_user(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = _load_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", hint="save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})", hint="the price override file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the catalog must be a mapping (training:, hosting:, lifecycle:, ...)")
    return data


@dataclass(frozen=True)
class Catalog:
    prices: list[PriceRow]
    lifecycle: list[LifecycleRow]
    gpus: list[GpuRow] = field(default_factory=list)
    instances: list[InstanceRow] = field(default_factory=list)
    platforms: list[PlatformRow] = field(default_factory=list)
    models: list[ModelRow] = field(default_factory=list)
    user_file: Path | None = None

    @classmethod
    def load(cls, override: Path | None = None) -> Catalog:
        """The shipped catalog, with the user's rows ($FTH_HOME/catalog.yaml) taking precedence."""
        from finetune_hub.store import fth_home

        shipped = _load_yaml(resources.files("finetune_hub.catalog").joinpath("catalog.yaml").read_text())
        override = override or fth_home() / "catalog.yaml"
        user = _read_user(override)
        sources = ((user, "user"), (shipped, "shipped"))
        try:
            prices = [
                _numbers(PriceRow(**{**row, "as_of": str(row["as_of"])}, kind=kind, origin=origin))
                for data, origin in sources
                for kind in ("training", "hosting")
                for row in data.get(kind) or []
            ]
            lifecycle = [LifecycleRow(**row) for data, _ in sources for row in data.get("lifecycle") or []]
            gpus = [_numbers(GpuRow(**row)) for data, _ in sources for row in data.get("gpus") or []]
            instances = [_numbers(InstanceRow(**row)) for data, _ in sources for row in data.get("instances") or []]
            platforms = [
                _numbers(PlatformRow(provider=name, **row))
                for data, _ in sources
                for name, row in (data.get("platforms") or {}).items()
            ]
            models = [_numbers(ModelRow(**row)) for data, _ in sources for row in data.get("models") or []]
        except (TypeError, KeyError, ValueError, AttributeError) as exc:  # AttributeError: a list for a mapping
            raise ConfigError(
                f"catalog row has a wrong or missing key: {exc}",
                hint=f"compare {override} with the shipped catalog (docs/cost.md)",
            ) from None
        return cls(prices, lifecycle, gpus, instances, platforms, models, override if user else None)

    def price(self, provider: str, model: str, kind: str = "training") -> PriceRow | None:
        """The user's most specific row for `model`, else the shipped catalog's (a user's `gpt-4o*` wins over
        a shipped `gpt-4o-mini*`: it is what the user says they pay)."""
        best: tuple[bool, int, PriceRow] | None = None
        for row in self.prices:
            if row.provider == provider and row.kind == kind:
                score = (row.origin == "user", _matches(row.model, model))
                if score[1] >= 0 and (best is None or score > best[:2]):
                    best = (*score, row)
        return best[2] if best else None

    def events(self, provider: str, model: str) -> list[LifecycleRow]:
        return sorted(
            (r for r in self.lifecycle if r.provider == provider and _matches(r.model, model) >= 0),
            key=lambda r: r.date,
        )

    def gpu(self, name: str) -> GpuRow | None:
        """The throughput row for a GPU, by case-insensitive name (user rows first)."""
        return next((g for g in self.gpus if g.gpu.lower() == name.lower()), None)

    def instance(self, provider: str, instance: str) -> InstanceRow | None:
        return next((i for i in self.instances if i.provider == provider and i.instance == instance), None)

    def platform(self, provider: str) -> PlatformRow:
        """How `provider` is priced; platforms the catalog does not describe are priced by base model."""
        found = next((p for p in self.platforms if p.provider == provider), None)
        return found or PlatformRow(provider=provider, priced_by="model")

    def parameters(self, model: str) -> ModelRow | None:
        """The most specific `models:` row for `model` (user rows win ties)."""
        ranked = [(_matches(r.model, model), r) for r in self.models]
        best = max((pair for pair in ranked if pair[0] >= 0), key=lambda pair: pair[0], default=None)
        return best[1] if best else None

    def providers(self) -> list[str]:
        """Every platform with at least one training price row, in catalog order."""
        return list(dict.fromkeys(r.provider for r in self.prices if r.kind == "training"))


def retirement_problems(
    catalog: Catalog, provider: str, model: str, today: dt.date, warn_days: int = 90
) -> list[tuple[str, str]]:
    """("error"|"warning", message) for cutoffs passed or within `warn_days` of `today`."""
    found = []
    for row in catalog.events(provider, model):
        what = row.event.replace("_", " ")
        alternatives = " | ".join(row.alternatives)
        fix = f"move the job with `fth rerun JOB --provider {alternatives}`" if alternatives else ""
        if row.date <= today:
            found.append(("error", f"{provider} {model}: {what} was {row.date} (source: {row.source}); {fix}"))
        elif (row.date - today).days <= warn_days:
            days = (row.date - today).days
            found.append(
                ("warning", f"{provider} {model}: {what} on {row.date}, in {days} days (source: {row.source}); {fix}")
            )
    return found


def raise_if_retired(catalog: Catalog, provider: str, model: str, today: dt.date) -> None:
    errors = [msg for level, msg in retirement_problems(catalog, provider, model, today) if level == "error"]
    if errors:
        raise ProviderRetired(errors[0])
