"""The dated, sourced price and lifecycle catalog (package data, plus the user's override file)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from finetune_hub.errors import ConfigError, ProviderRetired


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


@dataclass(frozen=True)
class LifecycleRow:
    provider: str
    model: str
    event: str  # job_creation_cutoff | model_shutdown | training_retirement
    date: dt.date
    source: str
    verified: bool
    alternatives: list[str] = field(default_factory=list)


def _matches(pattern: str, model: str) -> int:
    """Match length (higher is more specific), or -1."""
    if pattern.endswith("*"):
        return len(pattern) - 1 if model.startswith(pattern[:-1]) else -1
    return len(pattern) + 1 if model == pattern else -1


@dataclass(frozen=True)
class Catalog:
    prices: list[PriceRow]
    lifecycle: list[LifecycleRow]

    @classmethod
    def load(cls, override: Path | None = None) -> Catalog:
        """The shipped catalog, with the user's rows ($FTH_HOME/catalog.yaml) taking precedence."""
        from finetune_hub.store import fth_home

        shipped = yaml.safe_load(resources.files("finetune_hub.catalog").joinpath("catalog.yaml").read_text())
        override = override or fth_home() / "catalog.yaml"
        user: dict[str, Any] = {}
        if override.exists():
            try:
                user = yaml.safe_load(override.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{override}: not valid YAML: {exc}") from None
        try:
            prices = [
                PriceRow(**{**row, "as_of": str(row["as_of"])}, kind=kind)
                for data in (user, shipped)
                for kind in ("training", "hosting")
                for row in data.get(kind, [])
            ]
            lifecycle = [LifecycleRow(**row) for data in (user, shipped) for row in data.get("lifecycle", [])]
        except TypeError as exc:
            raise ConfigError(f"catalog row has a wrong key: {exc}", hint=f"compare {override} with README") from None
        return cls(prices, lifecycle)

    def price(self, provider: str, model: str, kind: str = "training") -> PriceRow | None:
        """The most specific row for `model` (user rows win ties, since they come first)."""
        best: tuple[int, PriceRow] | None = None
        for row in self.prices:
            if row.provider == provider and row.kind == kind:
                score = _matches(row.model, model)
                if score >= 0 and (best is None or score > best[0]):
                    best = (score, row)
        return best[1] if best else None

    def events(self, provider: str, model: str) -> list[LifecycleRow]:
        return sorted(
            (r for r in self.lifecycle if r.provider == provider and _matches(r.model, model) >= 0),
            key=lambda r: r.date,
        )


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
