"""Estimates against hand computations from the catalog rows, and `fth estimate`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from finetune_hub import api, cost, data
from finetune_hub.cli import main
from finetune_hub.errors import ConfigError
from finetune_hub.pricing import Catalog
from finetune_hub.records import JobResult
from finetune_hub.spec import FineTuneSpec
from tests.cost.conftest import BASE_MODELS


def hand_totals(spec: FineTuneSpec) -> dict[str, tuple[float, float | None]]:
    """(total USD, runtime hours) per platform, worked out here from the catalog rows alone."""
    catalog, epochs, expected = Catalog.load(), 2, {}
    for provider in ("openai", "azure_openai", "vertex"):
        tokens = data.stats(spec.data.train, model=BASE_MODELS[provider]).tokens
        row = catalog.price(provider, BASE_MODELS[provider])
        assert row is not None and row.unit == "1M tokens"
        expected[provider] = (tokens * epochs / 1_000_000 * row.usd, None)
    # SageMaker: 2 × ml.g5.12xlarge = 8 × A10G; 1B parameters; 4 FLOPs per parameter per token
    tokens = data.stats(spec.data.train, model=BASE_MODELS["sagemaker"]).tokens * epochs
    a10g, platform = catalog.gpu("A10G"), catalog.platform("sagemaker")
    per_gpu = a10g.mfu * a10g.peak_tflops * 1e12 / (4 * 1e9)  # type: ignore[union-attr]
    speed = per_gpu * (1 + 7 * platform.multi_gpu_efficiency)
    hours = tokens / speed / 3600 + platform.overhead_minutes / 60
    expected["sagemaker"] = (hours * 2 * catalog.price("sagemaker", "ml.g5.12xlarge").usd, hours)  # type: ignore[union-attr]
    # local: one H100 (the default), 0.5B parameters, no bill
    tokens = data.stats(spec.data.train, model=BASE_MODELS["local"]).tokens * epochs
    h100, local = catalog.gpu("H100"), catalog.platform("local")
    speed = h100.mfu * h100.peak_tflops * 1e12 / (4 * 0.5e9)  # type: ignore[union-attr]
    expected["local"] = (0.0, tokens / speed / 3600 + local.overhead_minutes / 60)
    return expected


def test_each_total_matches_a_hand_computation(spec_file: Path) -> None:
    spec = FineTuneSpec.load(spec_file)
    rows = cost.estimate_many(spec, list(BASE_MODELS))
    assert {r.provider for r in rows} == set(BASE_MODELS) and not [r.error for r in rows if r.error]
    for row in rows:
        total, hours = hand_totals(spec)[row.provider]
        assert row.estimate is not None
        assert row.estimate.total_usd == pytest.approx(total, rel=1e-9), row.provider
        assert row.estimate.epochs == 2
        if hours is None:
            assert row.estimate.runtime_hours is None
        else:
            assert row.estimate.runtime_hours == pytest.approx(hours, rel=1e-9), row.provider
    totals = [r.estimate.total_usd for r in rows if r.estimate]
    assert totals == sorted(totals)


def test_openai_auto_epochs_follow_the_published_rule(spec_file: Path) -> None:
    spec = FineTuneSpec.load(spec_file)
    spec = spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(update={"epochs": None})})
    stats = data.stats(spec.data.train, model=BASE_MODELS["openai"])
    found = cost.estimate("openai", spec, stats)
    assert found.epochs == 3  # 30 examples × 3 = 90 < 100 → 100 // 30 = 3
    write = spec.data.train.parent / "small.jsonl"
    from tests.conftest import write_chat_jsonl

    write_chat_jsonl(write, n=12)
    small = data.stats(write, model=BASE_MODELS["openai"])
    assert cost.estimate("openai", spec, small).epochs == 8  # 100 // 12
    assert cost.estimate("vertex", spec, small).epochs == 3
    assert any("assume" in note for note in cost.estimate("vertex", spec, small).assumptions)


def test_serverless_mode_is_priced_per_token_when_the_catalog_knows_the_rate(spec_file: Path, fth_home: Path) -> None:
    spec = FineTuneSpec.load(spec_file)
    spec = spec.model_copy(update={"providers": {"sagemaker": {"mode": "serverless"}}})
    stats = data.stats(spec.data.train, model=BASE_MODELS["sagemaker"])
    with pytest.raises(ConfigError, match="serverless:meta-llama"):
        cost.estimate("sagemaker", spec, stats)
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        "training:\n  - {provider: sagemaker, model: 'serverless:*', usd: 4.0, unit: 1M tokens, as_of: 2026-11-01,"
        " source: test, verified: false}\n"
    )
    found = cost.estimate("sagemaker", spec, stats)
    assert found.total_usd == pytest.approx(stats.tokens * 2 / 1e6 * 4.0)
    assert found.runtime_hours is None
    assert not any("bills compute time" in note for note in found.assumptions)
    hourly = cost.estimate("sagemaker", FineTuneSpec.load(spec_file), stats)
    assert any("bills compute time" in note for note in hourly.assumptions)


def test_a_model_of_unknown_size_says_how_to_fix_it(spec_file: Path) -> None:
    spec = FineTuneSpec.load(spec_file)
    spec = spec.model_copy(update={"base_model": {**BASE_MODELS, "local": "my-org/mystery"}})
    stats = data.stats(spec.data.train)
    with pytest.raises(ConfigError, match="size of 'my-org/mystery'") as err:
        cost.estimate("local", spec, stats)
    assert "models:" in (err.value.hint or "")


def test_local_model_folders_are_sized_from_their_safetensors_headers(tmp_path: Path) -> None:
    import struct

    header = json.dumps({"a": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]}, "__metadata__": {}})
    blob = header.encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(blob)) + blob + bytes(128))
    parameters, how = cost.model_parameters(str(tmp_path), Catalog.load())
    assert parameters == 32 and "safetensors" in how
    assert cost.model_parameters("mistralai/Mixtral-8x7B-v0.1", Catalog.load())[0] == 56e9
    assert cost.model_parameters("HuggingFaceTB/SmolLM2-135M", Catalog.load())[0] == 135e6
    assert cost.model_parameters("gpt2", Catalog.load())[0] == 124439808
    assert cost.model_parameters("Qwen/Qwen2.5-7B-Instruct-1M", Catalog.load())[0] == 7e9  # 1M is its context


def test_a_validation_split_is_estimated_on_the_share_that_trains(spec_file: Path, fth_home: Path) -> None:
    whole = FineTuneSpec.load(spec_file)
    split = whole.model_copy(update={"data": whole.data.model_copy(update={"validation_split": 0.5})})
    trained = {"openai": 0.0, "sagemaker": 0.0}
    for provider in trained:
        (one,) = cost.estimate_many(split, [provider])
        assert one.estimate is not None
        assert one.estimate.billed_tokens < cost.estimate_many(whole, [provider])[0].estimate.billed_tokens  # type: ignore[union-attr]
        trained[provider] = one.estimate.billed_tokens or 0
    planned = api.plan(split, "openai").estimate  # what `fth submit` checks the budget against
    assert planned is not None and planned.billed_tokens == trained["openai"]
    # exactly the 15 examples the job trains on
    train = api.make_job("openai", split).data_files()["train"]
    assert sum(1 for _ in train.open()) == 15
    alone = whole.model_copy(update={"data": whole.data.model_copy(update={"train": train, "format": "auto"})})
    assert trained["openai"] == cost.estimate_many(alone, ["openai"])[0].estimate.billed_tokens  # type: ignore[union-attr]


def test_actual_cost_comes_from_what_the_platform_reported(spec_file: Path) -> None:
    spec = FineTuneSpec.load(spec_file)
    assert cost.actual_cost("openai", spec, JobResult(trained_tokens=2_000_000)) == pytest.approx(6.0)
    assert cost.actual_cost("openai", spec, JobResult()) is None
    # BillableTimeInSeconds is per instance: × 2 instances × $7.09
    assert cost.actual_cost("sagemaker", spec, JobResult(billable_seconds=1800)) == pytest.approx(0.5 * 2 * 7.09)
    assert cost.actual_cost("local", spec, JobResult()) == 0.0
    assert cost.difference(1.0, 1.25) == "+$0.25, +25%"
    assert cost.difference(2.0, 1.5) == "-$0.50, -25%"
    assert cost.difference(None, 1.0) == ""
    assert cost.difference(0.0, 0.0) == ""


def test_describe_reads_well() -> None:
    est = cost.CostEstimate("openai", "m", 0.5, "1M tokens", 3.0, 1.5, "2025-06-01", "src", False)
    assert cost.describe(est) == "$1.50 (0.500M tokens × $3.00/1M tokens, prices as of 2025-06-01)"
    hourly = replace(est, quantity=2.0, unit="instance-hour", total_usd=6.0)
    assert "2.00 instance-hours" in cost.describe(hourly)


def test_cli_estimate_all_prints_a_row_per_platform(
    spec_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    assert main(["estimate", str(spec_file), "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["provider"] for r in rows} >= set(BASE_MODELS)
    priced = [r for r in rows if r["estimate"]]
    assert {r["provider"] for r in priced} == set(BASE_MODELS)
    assert [r["estimate"]["total_usd"] for r in priced] == sorted(r["estimate"]["total_usd"] for r in priced)
    openai = next(r for r in rows if r["provider"] == "openai")
    assert any("job creation cutoff" in w for w in openai["warnings"])
    sagemaker = next(r for r in rows if r["provider"] == "sagemaker")["estimate"]
    assert sagemaker["runtime_hours"] > 0.1 and sagemaker["as_of"] and sagemaker["assumptions"]

    monkeypatch.setenv("COLUMNS", "200")
    assert main(["estimate", str(spec_file), "-p", "sagemaker", "-p", "openai", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "ml.g5.12xlarge" in out and "gpt-4o-mini-2024-07-18" in out and "gemini" not in out
    assert "tokens/s" in out  # the assumptions behind the runtime

    assert main(["estimate", str(spec_file), "-p", "openai", "-p", "openai", "--json"]) == 0
    assert [r["provider"] for r in json.loads(capsys.readouterr().out)] == ["openai"]  # a platform named twice


def test_cli_estimate_unknown_provider_is_bad_input(spec_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", str(spec_file), "-p", "opneai"]) == 2
    assert "did you mean 'openai'" in capsys.readouterr().err


def test_a_misspelt_setting_is_refused_not_priced_as_the_default(
    spec_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = yaml.safe_load(spec_file.read_text())
    spec["providers"]["sagemaker"] = {"instnce_type": "ml.p4d.24xlarge"}  # the default instance is much cheaper
    spec_file.write_text(yaml.safe_dump(spec))
    assert main(["estimate", str(spec_file), "-p", "sagemaker"]) == 2
    assert "instnce_type: unknown key; did you mean 'instance_type'?" in " ".join(capsys.readouterr().out.split())
    assert main(["estimate", str(spec_file), "-p", "sagemaker", "-p", "openai", "--json"]) == 0
    rows = {r["provider"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sagemaker"]["estimate"] is None and "instnce_type" in rows["sagemaker"]["error"]
    assert rows["openai"]["estimate"]["total_usd"] > 0  # the other platforms are still priced


def test_a_budget_that_cannot_be_checked_stops_the_submit_unless_yes(
    spec_file: Path, capsys: pytest.CaptureFixture[str], fth_home: Path
) -> None:
    spec = yaml.safe_load(spec_file.read_text())
    spec["budget"] = {"max_usd": 5}
    spec["base_model"]["openai"] = "davinci-002"  # no price for it: no estimate
    spec["base_model"]["local"] = "acme/mystery-model"  # of unknown size: no runtime, no estimate
    spec_file.write_text(yaml.safe_dump(spec))
    assert main(["submit", str(spec_file), "-p", "openai"]) == 2  # a real submit, not only the dry run
    out = " ".join(capsys.readouterr().err.split())
    assert "no cost estimate: no openai price for 'davinci-002'" in out  # the warning the error points to
    assert "budget.max_usd is $5.00, but with no cost estimate on openai it cannot be checked" in out
    plan = api.plan(FineTuneSpec.load(spec_file), "openai", over_budget_ok=True)
    assert not [p for p in plan.problems if "budget" in p.message]  # --yes: the user takes the risk
    local = api.plan(FineTuneSpec.load(spec_file), "local")  # own GPUs at $0: no budget to break
    assert local.estimate is None and not [p for p in local.problems if "budget" in p.message]


def test_time_billed_estimates_cut_examples_at_the_trainer_default_length(spec_file: Path) -> None:
    long = spec_file.parent / "data" / "long.jsonl"
    example = {"messages": [{"role": "user", "content": "word " * 20_000}, {"role": "assistant", "content": "ok"}]}
    long.write_text((json.dumps(example) + "\n") * 10)
    spec = FineTuneSpec.load(spec_file)
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"train": long})})
    assert spec.hyperparameters.max_seq_length is None
    for provider in ("local", "sagemaker"):
        stats = data.stats(long, model=BASE_MODELS[provider])
        assert stats.max_tokens > 2048
        found = cost.estimate(provider, spec, stats)
        assert found.billed_tokens == 10 * 2048 * 2, provider  # 10 examples cut to 2,048 tokens, 2 epochs
        assert any("trainer's default max_seq_length): 10 of them" in note for note in found.assumptions)
    hyper = spec.hyperparameters.model_copy(update={"max_seq_length": 4096})
    longer = spec.model_copy(update={"hyperparameters": hyper})
    assert cost.estimate("local", longer, stats).billed_tokens == 10 * 4096 * 2


@pytest.mark.parametrize(
    "training_type, price, hosting, note",
    [
        ("Developer", 1.00, 0.0, "no hourly fee"),
        ("developerTier", 1.00, 0.0, "no hourly fee"),  # Azure's REST spelling
        ("GlobalStandard", 2.00, 1.70, "$1.70/hour"),
        ("Standard", 2.00, 1.70, "a lower bound"),  # no sourced regional price: Global's, said so
        (None, 2.00, 1.70, "training_type not set"),
    ],
)
def test_azure_training_type_picks_the_price_and_the_hosting_fee(
    spec_file: Path, training_type: str | None, price: float, hosting: float, note: str
) -> None:
    spec = FineTuneSpec.load(spec_file)
    settings = {"training_type": training_type} if training_type else {}
    spec = spec.model_copy(update={"providers": {"azure_openai": settings}})
    stats = data.stats(spec.data.train, model=BASE_MODELS["azure_openai"])
    found = cost.estimate("azure_openai", spec, stats)
    assert (found.unit_price_usd, found.hosting_usd_per_hour) == (price, hosting)
    assert any(note in n for n in found.assumptions), found.assumptions
    if hosting == 0:
        assert not any("$1.70" in n for n in found.assumptions)
    # the actual cost uses the same row
    assert cost.actual_cost("azure_openai", spec, JobResult(trained_tokens=1_000_000)) == pytest.approx(price)


def test_your_own_price_for_the_model_is_not_replaced_by_a_shipped_tier_row(spec_file: Path, fth_home: Path) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        "training:\n  - {provider: azure_openai, model: 'gpt-4.1*', usd: 1.6, unit: 1M tokens, as_of: 2026-11-01,"
        " source: my invoice, verified: true}\n"
    )
    spec = FineTuneSpec.load(spec_file)
    spec = spec.model_copy(update={"providers": {"azure_openai": {"training_type": "Developer"}}})
    found = cost.estimate("azure_openai", spec, data.stats(spec.data.train, model=BASE_MODELS["azure_openai"]))
    assert found.unit_price_usd == 1.6  # not the shipped Developer row, made from the shipped $2.00
    assert any("add a 'Developer:<model>' row" in n for n in found.assumptions)


def test_a_retired_model_is_estimated_but_marked_unusable_and_ranked_last(
    spec_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")  # gpt-4.1-nano shut down on 2026-10-23
    spec = yaml.safe_load(spec_file.read_text())
    spec["base_model"] |= {"openai": "gpt-4.1-nano-2025-04-14", "vertex": "gemini-2.5-pro"}  # nano is cheaper
    spec_file.write_text(yaml.safe_dump(spec))
    rows = cost.estimate_many(FineTuneSpec.load(spec_file), ["openai", "vertex"])
    assert [r.provider for r in rows] == ["vertex", "openai"]
    openai = rows[1]
    assert openai.estimate is not None and openai.retired and not openai.usable
    assert openai.error is not None and "model shutdown was 2026-10-23" in openai.error
    assert not any("model shutdown" in w for w in openai.warnings)  # an error, not also a warning
    assert rows[0].usable and not rows[0].retired
    assert main(["estimate", str(spec_file), "-p", "openai", "--json"]) == 2  # nothing usable
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["retired"] is True and shown["estimate"]["total_usd"] > 0 and "shutdown" in shown["error"]


def test_estimate_verbose_names_the_row_that_priced_each_platform(
    spec_file: Path, fth_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        "training:\n  - {provider: openai, model: 'gpt-4o-mini*', usd: 2.0, unit: 1M tokens, as_of: 2026-11-01,"
        " source: mine, verified: true}\n"
    )
    monkeypatch.setenv("COLUMNS", "300")
    assert main(["estimate", str(spec_file), "-p", "sagemaker", "-p", "openai", "-v"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "priced by the sagemaker row 'ml.g5.12xlarge' (training, the shipped catalog)" in out
    assert f"priced by the openai row 'gpt-4o-mini*' (training, your {fth_home / 'catalog.yaml'})" in out


def test_money_never_shows_a_nonzero_cost_as_zero() -> None:
    assert cost.money(0.00001) == "<$0.0001"
    assert cost.money(0.0) == "$0.00" and cost.money(0.00012) == "$0.0001" and cost.money(None) == "—"
    assert (cost.money(-0.005), cost.money(-0.0), cost.money(-0.00003)) == ("-$0.0050", "$0.00", "-<$0.0001")
    assert cost.difference(0.00101, 0.00102) == ""  # agree to the shown precision: no "+$0.0000"
    assert cost.difference(1.0, 1.000001) == ""
    assert cost.difference(0.001, 0.0012) == "+$0.0002, +20%"
