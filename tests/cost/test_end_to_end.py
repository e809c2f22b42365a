"""Cost, comparison and rerun over real jobs: the OpenAI adapter against the OpenAI emulator (both OpenAI
and Azure OpenAI paths), driven through the public API and the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from finetune_hub import api
from finetune_hub.cli import main
from finetune_hub.compare import compare
from finetune_hub.errors import ConfigError
from finetune_hub.rerun import plan_rerun, rerun
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from tests.conftest import chat_example, exit_code, write_chat_jsonl

pytest.importorskip("openai")
from tests.emulators.openai_server import OpenAIEmulator

SECRET = "emulator-secret-0123456789abcdef"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIEmulator]:
    emu = OpenAIEmulator(api_key=SECRET).start()
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_API_VERSION", "AZURE_OPENAI_AD_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", emu.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", emu.url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    yield emu
    emu.stop()


@pytest.fixture
def spec_path(tmp_path: Path) -> Path:
    write_chat_jsonl(tmp_path / "train.jsonl", n=12)
    write_chat_jsonl(tmp_path / "valid.jsonl", n=10, start=100)
    spec = {
        "name": "capitals",
        "base_model": {"openai": "gpt-4o-mini-2024-07-18", "azure_openai": "gpt-4.1-2025-04-14"},
        "data": {"train": "train.jsonl", "validation": "valid.jsonl"},
        "seed": 7,
        "suffix": "capitals",
        "providers": {"openai": {"request_timeout": 1.0}, "azure_openai": {"request_timeout": 1.0}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def finished_openai_job(emulator: OpenAIEmulator, spec_path: Path) -> str:
    job = api.submit(FineTuneSpec.load(spec_path), "openai")
    emulator.advance(job.remote_id, "succeeded")
    job.sync()
    assert job.record is not None and job.record.status.value == "succeeded"
    return job.record.id


def held_out(tmp_path: Path) -> Path:
    """Three prompts the model trained on and one it did not."""
    path = tmp_path / "held.jsonl"
    path.write_text("".join(json.dumps(chat_example(i)) + "\n" for i in (0, 5, 11, 500)))
    return path


def test_actual_cost_is_stored_and_shown_against_the_estimate(
    emulator: OpenAIEmulator, spec_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    record = JobStore().get(job_id)
    trained = emulator.jobs[record.remote_id].wire["trained_tokens"]  # type: ignore[index]
    assert record.actual_usd == pytest.approx(trained / 1e6 * 3.00)  # gpt-4o-mini row: $3 per 1M
    assert record.estimated_usd is not None and record.estimated_usd > 0
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["list"]) == 0
    shown = capsys.readouterr().out
    assert re.search(r"\$0\.\d+ \([+-]\$0\.\d+, [+-]\d+%\)", shown), shown


def test_compare_with_eval_writes_three_reports(emulator: OpenAIEmulator, spec_path: Path, tmp_path: Path) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    found = compare([job_id], eval_file=held_out(tmp_path), metrics=["exact", "rouge-l"], include_base=True)
    tuned, base = found.evaluations
    assert (tuned.answered, tuned.failed) == (4, 0)
    assert tuned.scores["exact"] == pytest.approx(0.75)  # the unseen prompt gets "I don't know."
    assert 0.75 <= tuned.scores["rouge-l"] < 1.0
    assert base.is_base and base.failed == 4 and "does not exist" in (base.error or "")
    assert found.jobs[0].curves["train_loss"] and found.jobs[0].curves["valid_loss"]

    out = tmp_path / "reports"
    args = ["compare", job_id, "--eval", str(held_out(tmp_path)), "-m", "exact", "-m", "rouge-l"]
    assert (
        main([*args, "--report", str(out / "r.html"), "--report", str(out / "r.md"), "--report", str(out / "r.json")])
        == 0
    )
    html = (out / "r.html").read_text()
    assert html.count("<svg") == 3  # loss curves + one cost-versus-quality chart per metric
    assert SECRET not in html and SECRET not in (out / "r.json").read_text()
    md = (out / "r.md").read_text()
    assert "| model | platform | exact | rouge-l | answered | failed | cost |" in md
    assert f"| {job_id} | openai | 0.75 |" in md
    data = json.loads((out / "r.json").read_text())
    assert data["evaluations"][0]["scores"]["exact"] == pytest.approx(0.75)


def test_cli_compare_refuses_bad_options_before_any_paid_request(
    emulator: OpenAIEmulator, spec_path: Path, tmp_path: Path
) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    args = ["compare", job_id, "--eval", str(held_out(tmp_path))]
    for options in (["--report", str(tmp_path / "out.txt")], ["--limit", "0"], ["--limit", "-2"]):
        assert exit_code([*args, *options]) == 2, options
    assert not [r for r in emulator.requests if r.path.endswith("/chat/completions")]
    assert main([*args, "--limit", "1", "--json"]) == 0
    assert len([r for r in emulator.requests if r.path.endswith("/chat/completions")]) == 1


def test_rerun_maps_the_job_to_azure_and_reports_what_changed(emulator: OpenAIEmulator, spec_path: Path) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    planned = plan_rerun(job_id, "azure_openai")
    changes = {c.field: c for c in planned.changes}
    assert changes["base_model"].after == "azure_openai: gpt-4.1-2025-04-14"
    assert changes["hyperparameters.epochs"].after == 3  # what OpenAI picked for "auto"
    assert changes["hyperparameters.batch_size"].after == 1
    assert "hyperparameters.learning_rate_multiplier" not in changes
    assert not planned.errors and planned.estimate is not None and len(emulator.jobs) == 1

    done = rerun(job_id, "azure_openai")
    assert done.job_id and len(emulator.jobs) == 2
    new = JobStore().get(done.job_id)
    assert new.provider == "azure_openai" and new.spec["hyperparameters"]["epochs"] == 3
    wire = emulator.jobs[new.remote_id].wire  # type: ignore[index]
    assert wire["model"] == "gpt-4.1-2025-04-14"
    assert wire["hyperparameters"]["n_epochs"] == 3 and wire["hyperparameters"]["batch_size"] == 1
    assert wire["seed"] == 7
    linked = [e.message for _, e in JobStore().events(done.job_id)]
    assert any(m.startswith(f"rerun of {job_id} (openai)") for m in linked)
    assert any(f"rerun on azure_openai as {done.job_id}" in e.message for _, e in JobStore().events(job_id))


def test_rerun_fits_a_suffix_to_the_targets_rules(emulator: OpenAIEmulator, spec_path: Path) -> None:
    """OpenAI takes 'terse-capitals-v1.2'; Azure takes 18 characters and no '.': rerun must not be stuck on it."""
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "suffix": "terse-capitals-v1.2"}))
    job_id = finished_openai_job(emulator, spec_path)
    planned = plan_rerun(job_id, "azure_openai")
    change = next(c for c in planned.changes if c.field == "suffix")
    assert (change.before, change.after) == ("terse-capitals-v1.2", "terse-capitals-v1-")
    assert not planned.errors
    done = rerun(job_id, "azure_openai")
    assert emulator.jobs[JobStore().get(done.job_id or "").remote_id or ""].wire["suffix"] == "terse-capitals-v1-"


def test_rerun_drops_what_the_target_cannot_take_and_stops_on_errors(
    emulator: OpenAIEmulator, spec_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    with pytest.raises(ConfigError, match="already ran on openai"):
        plan_rerun(job_id, "openai")
    # a spec without a base model for the target: the user must say which
    store = JobStore()
    record = store.get(job_id)
    with pytest.raises(ConfigError, match="no base model for vertex"):
        plan_rerun(job_id, "vertex")
    # the data changed since: rerun refuses rather than train on other data
    Path(record.spec["data"]["train"]).write_text(json.dumps(chat_example(1)) + "\n")
    with pytest.raises(Exception, match="changed since it ran"):
        plan_rerun(job_id, "azure_openai")


def test_cli_rerun_dry_run_and_submit(
    emulator: OpenAIEmulator, spec_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["rerun", job_id, "-p", "azure_openai", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "hyperparameters.epochs" in out and "dry run" in out and len(emulator.jobs) == 1
    assert main(["rerun", job_id, "-p", "azure_openai", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["job_id"] and shown["provider"] == "azure_openai" and len(emulator.jobs) == 2


def test_cli_rerun_dry_run_with_wait_prints_the_plan_as_json(
    emulator: OpenAIEmulator, spec_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    assert main(["rerun", job_id, "-p", "azure_openai", "--dry-run", "--wait", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source_id"] == job_id and shown["provider"] == "azure_openai" and shown["job_id"] is None
    assert len(emulator.jobs) == 1  # nothing was created, so there was nothing to wait for


def test_rerun_lists_dropped_and_reinterpreted_settings(emulator: OpenAIEmulator, spec_path: Path) -> None:
    data = yaml.safe_load(spec_path.read_text())
    data["hyperparameters"] = {"learning_rate_multiplier": 2.0, "epochs": 2}
    data["lora"] = {"rank": 8}
    spec_path.write_text(yaml.safe_dump(data))
    job_id = finished_openai_job(emulator, spec_path)
    changes = {c.field: c for c in plan_rerun(job_id, "azure_openai", base_model="gpt-4o-2024-08-06").changes}
    assert (
        changes["base_model"].after == "azure_openai: gpt-4o-2024-08-06" and changes["base_model"].why == "--base-model"
    )
    assert changes["lora"].after is None and "cannot carry over" in changes["lora"].why
    assert changes["hyperparameters.learning_rate_multiplier"].after == 2.0
    assert "azure_openai's own default learning rate" in changes["hyperparameters.learning_rate_multiplier"].why
    assert "hyperparameters.epochs" not in changes  # set in the spec: carried as it is


def test_a_model_that_refuses_our_key_is_not_asked_every_prompt(
    emulator: OpenAIEmulator, spec_path: Path, tmp_path: Path
) -> None:
    job_id = finished_openai_job(emulator, spec_path)
    emulator.faults.plan("401", on="POST /v1/chat/completions")
    [tuned] = compare([job_id], eval_file=held_out(tmp_path), metrics=["exact"]).evaluations
    assert tuned.failed == 4 and tuned.answered == 0
    assert [a.error.startswith("not asked: ") for a in tuned.answers if a.error] == [False, True, True, True]


def test_a_platform_out_of_reach_after_the_retries_is_not_asked_the_rest(
    emulator: OpenAIEmulator, spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_hub.job import FineTuneJob

    job_id = finished_openai_job(emulator, spec_path)
    monkeypatch.setattr(FineTuneJob, "retry_sleep", staticmethod(lambda seconds: None))
    emulator.faults.plan("503", count=100, on="POST /v1/chat/completions")  # down through every retry
    [tuned] = compare([job_id], eval_file=held_out(tmp_path), metrics=["exact"]).evaluations
    assert tuned.failed == 4 and [a.error.startswith("not asked: ") for a in tuned.answers if a.error] == [
        False, True, True, True
    ]  # fmt: skip
    assert emulator.faults.injected.count("503") == 6  # one prompt's attempts, not four prompts' 24
