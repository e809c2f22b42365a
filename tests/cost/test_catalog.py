"""The price catalog: shipped rows, the user's override file, ages and flags, `fth prices`."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pytest

from finetune_hub.cli import main
from finetune_hub.errors import ConfigError
from finetune_hub.pricing import Catalog, base_model, raise_if_retired, retirement_problems, today


def test_every_priced_platform_says_how_it_is_priced() -> None:
    catalog = Catalog.load()
    for provider in catalog.providers():
        platform = catalog.platform(provider)
        assert platform.priced_by in ("model", "instance", "gpu"), provider
        if platform.priced_by == "instance":
            for row in (r for r in catalog.prices if r.provider == provider and r.kind == "training"):
                if not row.model.startswith("serverless:"):
                    instance = catalog.instance(provider, row.model)
                    assert instance is not None and catalog.gpu(instance.gpu) is not None, row.model
        if platform.default and platform.priced_by == "gpu":
            assert catalog.gpu(platform.default) is not None
    for row in catalog.prices:
        assert row.source and dt.date.fromisoformat(row.as_of)


def test_user_rows_override_shipped_ones(fth_home: Path) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        "training:\n"
        "  - {provider: openai, model: gpt-4o-mini-2024-07-18, usd: 1.25, unit: 1M tokens, as_of: 2026-11-01,\n"
        "     source: my contract, verified: true}\n"
        "  - {provider: vertex, model: gemini*, usd: 9, unit: 1M tokens, as_of: 2026-11-01, source: mine,\n"
        "     verified: true}\n"
        "gpus:\n"
        "  - {gpu: H100, peak_tflops: 989, mfu: 0.4, source: my benchmark, verified: true}\n"
    )
    catalog = Catalog.load()
    row = catalog.price("openai", "gpt-4o-mini-2024-07-18")
    assert row is not None and (row.usd, row.origin) == (1.25, "user")
    assert catalog.price("openai", "gpt-4o-mini-2024-07-18-other").origin == "shipped"  # type: ignore[union-attr]
    # a user's prefix row wins over a longer shipped one: it is what they say they pay
    assert any(
        r.origin == "shipped" and r.model.startswith("gemini-") for r in catalog.prices if r.provider == "vertex"
    )
    assert catalog.price("vertex", "gemini-2.0-flash-001").usd == 9  # type: ignore[union-attr]
    assert catalog.gpu("h100").mfu == 0.4  # type: ignore[union-attr]
    assert catalog.user_file == fth_home / "catalog.yaml"


def test_plain_variants_a_hand_written_row_may_hold_load(fth_home: Path) -> None:
    """An unquoted number where text goes, and a unit in another spelling, mean what they say (files that loaded
    before these checks still load)."""
    _override(fth_home, _PRICE.replace("model: m", "model: 4090").replace("1M tokens", "1M Tokens"))
    row = Catalog.load().price("openai", "4090")
    assert row is not None and (row.model, row.unit) == ("4090", "1M tokens")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("training: [\n", "not valid YAML"),
        ("training:\n  - {provider: x, usd: 1}\n", "wrong or missing key"),
        (
            "training:\n  - {provider: x, model: m, usd: $3.00, unit: 1M tokens, as_of: 2026-01-01, source: s,\n"
            "     verified: true}\n",
            r"usd = '\$3.00' is not a number \(row x, m\)",
        ),
        ("gpus:\n  - {gpu: H100, peak_tflops: 989, mfu: 0, source: mine, verified: true}\n",
         r"mfu = 0 must be above 0 \(row H100, 989\)"),  # a runtime divides by it
        ("training:\n  - {provider: x, model: m, usd: -1, unit: 1M tokens, as_of: 2026-01-01, source: s,"
         " verified: true}\n", r"usd = -1 must be 0 or more"),
        ("platforms: [openai]\n", "`platforms:` must map platform names"),
        ("lifecycle:\n  - {provider: x, model: m, event: model_shutdown, date: 2027-1-6, source: s, verified: true}\n",
         "wrong or missing key"),
    ],
)  # fmt: skip
def test_a_broken_override_file_is_a_clear_error(fth_home: Path, text: str, needle: str) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        Catalog.load()


def test_an_unreadable_override_file_is_a_clear_error(fth_home: Path) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_bytes(b"training: []\nsource: \xa3\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Catalog.load()
    (fth_home / "catalog.yaml").unlink()
    (fth_home / "catalog.yaml").mkdir()
    with pytest.raises(ConfigError, match="cannot be read"):
        Catalog.load()


def test_a_quoted_lifecycle_date_is_read_as_a_date(fth_home: Path) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        'lifecycle:\n  - {provider: openai, model: "gpt-4o-mini*", event: model_shutdown, date: "2027-02-01",\n'
        "     source: x, verified: true}\n"
    )
    rows = Catalog.load().events("openai", "gpt-4o-mini-2024-07-18")
    assert dt.date(2027, 2, 1) in [r.date for r in rows]


def test_ages_and_staleness() -> None:
    row = Catalog.load().price("openai", "gpt-4o-mini-2024-07-18")
    assert row is not None and row.as_of == "2025-06-01"
    assert row.age_days(dt.date(2025, 6, 11)) == 10
    assert not row.stale(dt.date(2025, 6, 11))
    assert row.stale(dt.date(2026, 11, 27))


def test_today_can_be_pinned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTH_TODAY", "2026-01-02")
    assert today() == dt.date(2026, 1, 2)
    monkeypatch.setenv("FTH_TODAY", "yesterday")
    with pytest.raises(ConfigError, match="FTH_TODAY"):
        today()


def test_retired_models_are_refused() -> None:
    from finetune_hub.errors import ProviderRetired

    with pytest.raises(ProviderRetired, match="gradient"):
        raise_if_retired(Catalog.load(), "gradient", "any", dt.date(2026, 1, 1))


def test_prices_json_flags_unverified_and_stale_rows(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    assert main(["prices", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    by_key = {(r["provider"], r["model"], r["kind"]): r for r in shown["prices"]}
    mini = by_key[("openai", "gpt-4o-mini*", "training")]
    assert (mini["verified"], mini["stale"], mini["age_days"]) == (False, True, 544)
    rft = by_key[("openai", "o4-mini*", "training")]
    assert (rft["verified"], rft["stale"], rft["age_days"]) == (True, False, 0)
    assert any(r["provider"] == "gradient" for r in shown["lifecycle"])


def test_prices_table_lists_every_row(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["prices", "--provider", "sagemaker"]) == 0
    out = capsys.readouterr().out
    for instance in ("ml.g5.2xlarge", "ml.g5.12xlarge", "ml.p4d.24xlarge"):
        assert instance in out
    assert "unverified" in out and "stale" in out and "openai" not in out
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["prices"]) == 0
    table = capsys.readouterr().out.split("lifecycle")[0]
    assert "…" not in table and max(len(line) for line in table.splitlines()) <= 80
    assert "gpt-4.1-2025-04-14" in table and "ml.p4d.24xlarge" in table


def test_prices_for_a_platform_the_catalog_does_not_know_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prices", "--provider", "nope"]) == 2
    assert "no rows for 'nope'" in capsys.readouterr().err


def test_a_row_you_override_is_listed_once_as_yours(
    fth_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        "training:\n"
        "  - {provider: sagemaker, model: ml.g5.2xlarge, usd: 1.10, unit: instance-hour, as_of: 2026-11-01,\n"
        "     source: our negotiated rate, verified: true}\n"
    )
    assert main(["prices", "--provider", "sagemaker", "--json"]) == 0
    rows = [r for r in json.loads(capsys.readouterr().out)["prices"] if r["model"] == "ml.g5.2xlarge"]
    assert [(r["usd"], r["origin"]) for r in rows] == [(1.10, "user")]  # not also the shipped row it replaces
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["prices", "--provider", "sagemaker"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "ml.g5.2xlarge" in line]
    assert len(lines) == 1 and "yours" in lines[0]


def _override(fth_home: Path, text: str) -> Path:
    fth_home.mkdir(parents=True, exist_ok=True)
    (fth_home / "catalog.yaml").write_text(text)
    return fth_home / "catalog.yaml"


def test_your_rows_win_and_the_most_specific_of_yours_first(fth_home: Path) -> None:
    _override(
        fth_home,
        "training:\n"
        "  - {provider: sagemaker, model: 'ml.g5*', usd: 1.0, unit: instance-hour, as_of: 2026-11-27, source: mine,\n"
        "     verified: true}\n"
        "  - {provider: sagemaker, model: ml.g5.2xlarge, usd: 1.1, unit: instance-hour, as_of: 2026-11-27,\n"
        "     source: mine, verified: true}\n",
    )
    catalog = Catalog.load()
    big = catalog.price("sagemaker", "ml.g5.48xlarge")
    assert big is not None and (big.usd, big.origin) == (1.0, "user")  # yours, though shipped has its own row
    assert catalog.price("sagemaker", "ml.g5.2xlarge").usd == 1.1  # type: ignore[union-attr]  # your exact row
    assert catalog.price("sagemaker", "ml.p4d.24xlarge").origin == "shipped"  # type: ignore[union-attr]


def test_a_user_platform_block_keeps_the_shipped_keys_it_does_not_set(fth_home: Path) -> None:
    _override(fth_home, "platforms:\n  sagemaker: {overhead_minutes: 10}\n  local: {default: A100}\n")
    catalog = Catalog.load()
    sagemaker = catalog.platform("sagemaker")
    assert (sagemaker.overhead_minutes, sagemaker.priced_by, sagemaker.token_modes) == (10, "instance", ["serverless"])
    local = catalog.platform("local")
    assert (local.default, local.priced_by, local.overhead_minutes) == ("A100", "gpu", 1)
    _override(fth_home, "platforms:\n  mine: {default: A100}\n")  # a new platform must say how it is priced
    with pytest.raises(ConfigError, match=r"platforms\.mine: wrong or missing key.*priced_by"):
        Catalog.load()


def test_a_user_lifecycle_row_replaces_the_shipped_one(fth_home: Path) -> None:
    _override(
        fth_home,
        "lifecycle:\n"
        "  - {provider: openai, model: '*', event: job_creation_cutoff, date: 2027-06-30, source: my account manager,\n"
        "     verified: true, alternatives: [azure_openai]}\n",
    )
    events = Catalog.load().events("openai", "gpt-4.1-2025-04-14")
    cutoffs = [e.date for e in events if e.event == "job_creation_cutoff"]
    assert cutoffs == [dt.date(2027, 6, 30)]
    assert [e.date for e in events if e.event == "model_shutdown"] == [dt.date(2027, 1, 14)]  # not yours: kept


def test_a_fine_tune_is_priced_capped_and_retired_as_its_base() -> None:
    from finetune_hub.data.billing import example_token_cap

    tuned = "ft:gpt-4o-mini-2024-07-18:my-org::abc123"
    assert base_model(tuned) == "gpt-4o-mini-2024-07-18"
    assert base_model("ft:gpt-4.1-2025-04-14:my-org:custom:xyz") == "gpt-4.1-2025-04-14"
    assert base_model("gpt-4o-mini") == "gpt-4o-mini" and base_model("ft:") == "ft:"
    catalog = Catalog.load()
    assert catalog.price("openai", tuned).usd == 3.0  # type: ignore[union-attr]
    assert dt.date(2027, 1, 14) in [e.date for e in catalog.events("openai", tuned) if e.event == "model_shutdown"]
    problems = retirement_problems(catalog, "openai", tuned, dt.date(2027, 1, 20))
    assert any(level == "error" and "model shutdown was 2027-01-14" in msg for level, msg in problems)
    assert example_token_cap("openai", "ft:gpt-3.5-turbo-0125:my-org::x")[0] == 16_385


_PRICE = (
    "training:\n  - {provider: openai, model: m, usd: 1, unit: 1M tokens, as_of: 2026-11-01, source: s,"
    " verified: true}\n"
)


@pytest.mark.parametrize(
    "text, needle",
    [
        (_PRICE.replace("model: m", "model: [m]"), "training row 1: model = ['m'] must be text"),
        (_PRICE.replace("usd: 1", "usd: .nan"), "training row 1: usd = nan is not a number"),
        (_PRICE.replace("usd: 1", "usd: .inf"), "usd = inf is not a number"),
        (_PRICE.replace("1M tokens", "per token"), "unit = 'per token' must be one of 1M tokens, hour, instance-hour"),
        (_PRICE.replace("verified: true", "verified: 'no'"), "verified = 'no' must be true or false"),
        ("gpus:\n  - {gpu: H100, peak_tflops: 989, mfu: 20, source: mine, verified: true}\n",
         "gpus row 1: mfu = 20 must be a fraction up to 1"),
        ("platforms:\n  local: {priced_by: gpus}\n",
         "platforms.local: priced_by = 'gpus' must be one of gpu, instance"),
        ("lifecycle:\n  - {provider: x, model: m, event: e, date: 2027-01-06, source: s, verified: true,\n"
         "     alternatives: vertex}\n", "lifecycle row 1: alternatives = 'vertex' must be a list"),
        ("training:\n  - null\n", "training row 1: None is not a row"),
        ("training: {provider: openai}\n", "`training:` must be a list of rows"),
    ],
)  # fmt: skip
def test_a_wrong_value_names_the_file_row_and_field(
    fth_home: Path, text: str, needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _override(fth_home, text)
    with pytest.raises(ConfigError, match=re.escape(needle)) as err:
        Catalog.load()
    assert err.value.message.startswith(f"{path}: ")
    assert main(["prices"]) == 2  # reported, not a traceback
    assert needle in " ".join(capsys.readouterr().err.split())
