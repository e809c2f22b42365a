"""The dated, sourced price and lifecycle catalog (package data, plus the user's override file).

Besides prices and lifecycle dates it holds what time-billed platforms need to predict a runtime: GPU
throughput rows (datasheet peak × an assumed utilisation), which GPUs each instance type carries, and
per-platform defaults (what the price is keyed by, start-up overhead). `cost.py` does the arithmetic.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

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

    def __post_init__(self) -> None:
        if isinstance(self.as_of, dt.date):  # YAML reads an unquoted 2026-11-27 as a date
            object.__setattr__(self, "as_of", self.as_of.isoformat())

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
            try:
                date = dt.date.fromisoformat(str(self.date))
            except ValueError:
                raise ValueError(f"date = {self.date!r} is not a date (YYYY-MM-DD)") from None
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


def base_model(model: str) -> str:
    """The base of an OpenAI fine-tune ("ft:gpt-4o-mini-2024-07-18:my-org::abc123" → "gpt-4o-mini-2024-07-18"):
    a job continuing from it is priced, capped and retired as its base is. Any other id is returned unchanged."""
    return (model.split(":")[1] or model) if model.startswith("ft:") else model


def _matches(pattern: str, model: str) -> int:
    """Match length (higher is more specific), or -1. A fine-tune's id also matches its base model's rows."""
    return max(_match_one(pattern, name) for name in {model, base_model(model)})


def _match_one(pattern: str, model: str) -> int:
    if pattern.endswith("*"):
        return len(pattern) - 1 if model.startswith(pattern[:-1]) else -1
    return len(pattern) + 1 if model == pattern else -1


_MAY_BE_ZERO = frozenset({"usd", "overhead_minutes"})  # a free platform, no start-up time; the rest divide
_FRACTIONS = frozenset({"mfu", "multi_gpu_efficiency"})  # 0 < x <= 1: an `mfu: 20` meant 20%, not 2000%
_CHOICES: dict[str, frozenset[str]] = {
    "priced_by": frozenset({"model", "instance", "gpu"}),
    "unit": frozenset({"1M tokens", "hour", "instance-hour"}),
}
_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "str | None": (str, type(None)), "bool": (bool,)}


def _wrong(name: str, kind: str, value: Any) -> str | None:
    """Why `value` does not fit a field of type `kind`, or None when it does."""
    if kind in ("float", "int"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return "is not a number"  # .nan or .inf would pass every comparison (and every budget)
        if value < 0 or (value == 0 and name not in _MAY_BE_ZERO):
            return f"must be {'0 or more' if name in _MAY_BE_ZERO else 'above 0'}"
        if name in _FRACTIONS and value > 1:
            return "must be a fraction up to 1 (0.2 for 20%)"
    elif kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return "must be a list of names"
    elif kind in _TYPES and not isinstance(value, _TYPES[kind]):
        return "must be true or false" if kind == "bool" else "must be text (quote it)"
    if name in _CHOICES and value not in _CHOICES[name]:
        return "must be one of " + ", ".join(sorted(_CHOICES[name]))
    return None


def _check(row: Any) -> None:
    """A ValueError naming the first field of `row` whose value is wrong: text where text, finite numbers (none
    below 0, none 0 that a runtime divides by), fractions up to 1, the known `priced_by` and `unit` values."""
    for f in dataclasses.fields(row):
        value = getattr(row, f.name)
        if wrong := _wrong(f.name, str(f.type), value):
            named = ", ".join(str(getattr(row, k.name)) for k in dataclasses.fields(row)[:2])
            raise ValueError(f"{f.name} = {value!r} {wrong} (row {named})")


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


_Row = TypeVar("_Row")
#: (the file's data, "user" | "shipped", the file named in errors), the user's first
_Sources = tuple[tuple[dict[str, Any], str, str], ...]
_HINT = "compare it with the shipped catalog (docs/cost.md, `fth prices`)"


def _rows(sources: _Sources, section: str) -> list[tuple[str, Any, str]]:
    """(where, row, origin) for each row of `section` (a list), the user's first."""
    found = []
    for data, origin, name in sources:
        rows = data.get(section) or []
        if not isinstance(rows, list):
            raise ConfigError(f"{name}: `{section}:` must be a list of rows (each starting with '- ')", hint=_HINT)
        found += [(f"{name}: {section} row {n}", row, origin) for n, row in enumerate(rows, 1)]
    return found


_UNITS = {"1mtokens": "1M tokens", "1mtok": "1M tokens", "1m": "1M tokens", "hour": "hour", "hours": "hour",
          "instance-hour": "instance-hour", "instance-hours": "instance-hour", "instancehour": "instance-hour",
          "instancehours": "instance-hour"}  # fmt: skip


def _lenient(cls: Any, row: dict[str, Any]) -> dict[str, Any]:
    """What a hand-written row means, where it is plain: an unquoted `gpu: 4090` is the text "4090", and a
    unit in another spelling ("1M tok", "instance-hours") is the unit (files that loaded before stay loading)."""
    text = {f.name for f in dataclasses.fields(cls) if str(f.type) in ("str", "str | None")}
    fixed = {k: str(v) if k in text and isinstance(v, int | float) and not isinstance(v, bool) else v
             for k, v in row.items()}  # fmt: skip
    if isinstance(unit := fixed.get("unit"), str):
        fixed["unit"] = _UNITS.get(unit.lower().replace(" ", ""), unit)
    return fixed


def _make(cls: type[_Row], where: str, row: Any, **extra: Any) -> _Row:
    """One catalog row, checked; a ConfigError naming the file, the row and the field when it is wrong."""
    if not isinstance(row, dict):
        raise ConfigError(f"{where}: {row!r} is not a row of `key: value` pairs", hint=_HINT)
    try:
        made = cls(**_lenient(cls, {**row, **extra}))
    except (TypeError, ValueError) as exc:  # a missing or unknown key; a date that is not one
        raise ConfigError(f"{where}: wrong or missing key: {exc}", hint=_HINT) from None
    try:
        _check(made)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}", hint=_HINT) from None
    return made


def _platforms(sources: _Sources) -> list[PlatformRow]:
    """A platform's settings: the user's keys over the shipped ones (a user block that sets only `default`
    keeps the shipped `token_modes` and `overhead_minutes`)."""
    merged: dict[Any, tuple[str, dict[str, Any]]] = {}
    for data, _, name in reversed(sources):  # shipped first, then the user's over it
        block = data.get("platforms") or {}
        if not isinstance(block, dict):
            raise ConfigError(f"{name}: `platforms:` must map platform names to their settings", hint=_HINT)
        for provider, row in block.items():
            where = f"{name}: platforms.{provider}"
            if not isinstance(row, dict):
                raise ConfigError(f"{where}: {row!r} is not a mapping of settings", hint=_HINT)
            merged[provider] = (where, {**merged.get(provider, ("", {}))[1], **row})
    return [_make(PlatformRow, where, row, provider=provider) for provider, (where, row) in merged.items()]


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
        """The shipped catalog with the user's rows ($FTH_HOME/catalog.yaml): see `price`, and docs/cost.md for
        how each section combines; every row checked (a ConfigError naming the file, row and field)."""
        from finetune_hub.store import fth_home

        shipped = _load_yaml(resources.files("finetune_hub.catalog").joinpath("catalog.yaml").read_text())
        override = override or fth_home() / "catalog.yaml"
        user = _read_user(override)
        sources: _Sources = ((user, "user", str(override)), (shipped, "shipped", "the shipped catalog.yaml"))

        prices = [
            _make(PriceRow, where, row, kind=section, origin=origin)
            for section in ("training", "hosting")
            for where, row, origin in _rows(sources, section)
        ]
        lifecycle = [(_make(LifecycleRow, where, row), origin) for where, row, origin in _rows(sources, "lifecycle")]
        yours = {(r.provider, r.model, r.event) for r, origin in lifecycle if origin == "user"}
        return cls(
            prices,
            # a user row replaces the shipped one for the same provider, model and event (an extended cutoff)
            [r for r, origin in lifecycle if origin == "user" or (r.provider, r.model, r.event) not in yours],
            [_make(GpuRow, where, row) for where, row, _ in _rows(sources, "gpus")],
            [_make(InstanceRow, where, row) for where, row, _ in _rows(sources, "instances")],
            _platforms(sources),
            [_make(ModelRow, where, row) for where, row, _ in _rows(sources, "models")],
            override if user else None,
        )

    def price(self, provider: str, model: str, kind: str = "training") -> PriceRow | None:
        """The user's most specific row for `model` (an exact id over a prefix, a longer prefix over a shorter
        one), else the shipped catalog's: a user's `gpt-4o*` wins over a shipped `gpt-4o-mini*`, since it is what
        the user says they pay. A fine-tune's id is priced by its base model's rows too."""
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
