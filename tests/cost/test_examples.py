"""The shipped cross-platform example: `fth estimate --all` gives a row for every platform, each total equal
to a hand computation from the catalog rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_hub import data
from finetune_hub.cli import main
from finetune_hub.pricing import Catalog
from finetune_hub.spec import FineTuneSpec

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "compare" / "spec.yaml"


def by_hand(spec: FineTuneSpec) -> dict[str, float]:
    """USD per platform from the catalog rows: tokens × 3 epochs × price, or predicted hours × price."""
    catalog, epochs = Catalog.load(), 3
    totals = {}
    for provider in ("openai", "azure_openai", "vertex"):
        model = spec.base_model_for(provider)
        tokens = data.stats(spec.data.train, model=model).tokens
        totals[provider] = tokens * epochs / 1e6 * catalog.price(provider, model).usd  # type: ignore[union-attr]
    # SageMaker ml.g5.2xlarge: one A10G, a 0.5B model, 4 FLOPs per parameter per token, plus start-up time
    tokens = data.stats(spec.data.train, model=spec.base_model_for("sagemaker")).tokens * epochs
    a10g, sagemaker = catalog.gpu("A10G"), catalog.platform("sagemaker")
    tokens_per_s = a10g.mfu * a10g.peak_tflops * 1e12 / (4 * 0.5e9)  # type: ignore[union-attr]
    hours = tokens / tokens_per_s / 3600 + sagemaker.overhead_minutes / 60
    totals["sagemaker"] = hours * catalog.price("sagemaker", "ml.g5.2xlarge").usd  # type: ignore[union-attr]
    totals["local"] = 0.0
    return totals


def test_estimate_all_for_the_example_matches_the_hand_computation(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    assert main(["estimate", str(EXAMPLE), "--all", "--json"]) == 0
    rows = {r["provider"]: r for r in json.loads(capsys.readouterr().out)}
    expected = by_hand(FineTuneSpec.load(EXAMPLE))
    assert set(rows) >= set(expected)
    for provider, total in expected.items():
        assert rows[provider]["error"] is None, rows[provider]["error"]
        assert rows[provider]["estimate"]["total_usd"] == pytest.approx(total, rel=1e-9), provider
        assert rows[provider]["estimate"]["as_of"]


def test_estimate_table_for_the_example_prints_every_platform(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["estimate", str(EXAMPLE)]) == 0
    table = capsys.readouterr().out.split("? = price")[0]
    for provider in ("openai", "azure_openai", "vertex", "sagemaker", "local"):
        assert f"│ {provider} " in table
    assert table.index("│ local ") < table.index("│ sagemaker ")  # cheapest first


def test_estimate_table_fits_an_80_column_terminal_without_cutting_values(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    assert main(["estimate", str(EXAMPLE)]) == 0
    table = capsys.readouterr().out.split("? = price")[0]
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= 80
    assert main(["estimate", str(EXAMPLE), "--json"]) == 0
    for row in json.loads(capsys.readouterr().out):
        e = row["estimate"]
        for value in (row["provider"], e["model"], e["as_of"], f"{e['billed_tokens']:,}"):
            assert value in table, value
