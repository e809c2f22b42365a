"""The OpenAI adapter through the real `openai` SDK against the stateful emulator: what it sends, what it
reads back, and how it fails."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import api
from finetune_hub.errors import AuthError, ConfigError, ProviderError
from finetune_hub.job import PreparedData
from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.openai import OpenAIJob, parse_results
from tests.conformance.bind_openai import OpenAIBinding
from tests.conftest import no_sleep, write_chat_jsonl, write_dpo_jsonl
from tests.emulators.openai_server import OpenAIEmulator


@pytest.fixture
def bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIBinding]:
    binding = OpenAIBinding()
    binding.start(tmp_path, monkeypatch)
    yield binding
    binding.stop()


@pytest.fixture
def emulator(bound: OpenAIBinding) -> OpenAIEmulator:
    return bound.emulator


def make_spec(tmp_path: Path, **overrides: object) -> FineTuneSpec:
    train = write_chat_jsonl(tmp_path / "data" / "train.jsonl", 12)
    valid = write_chat_jsonl(tmp_path / "data" / "valid.jsonl", 10, start=100)
    raw: dict[str, Any] = {
        "name": "capitals",
        "base_model": "gpt-4o-mini-2024-07-18",
        "data": {"train": str(train), "validation": str(valid)},
        "providers": {"openai": {"request_timeout": 1.0}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return FineTuneSpec.from_dict(raw)


def submitted(tmp_path: Path, store: JobStore, **overrides: object) -> OpenAIJob:
    job = api.submit(make_spec(tmp_path, **overrides), "openai", store=store)
    assert isinstance(job, OpenAIJob)
    return job


def test_the_spec_maps_onto_the_create_request(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    pairs = tmp_path / "dpo.jsonl"
    lines = [
        {
            "input": {"messages": [{"role": "user", "content": f"Greet guest {i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"Welcome, guest {i}!"}],
            "non_preferred_output": [{"role": "assistant", "content": "What."}],
        }
        for i in range(12)
    ]
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    wandb = {"type": "wandb", "wandb": {"project": "fth", "tags": ["dpo"]}}
    job = submitted(
        tmp_path,
        store,
        method="dpo",
        data={"train": str(pairs), "validation": None},
        hyperparameters={"epochs": 4, "batch_size": 8, "learning_rate_multiplier": 0.5, "beta": 0.2},
        suffix="capitals-v1",
        seed=11,
        providers={"openai": {"integrations": [wandb], "metadata": {"team": "ml"}}},
    )
    sent = emulator.jobs[job.remote_id].wire
    assert sent["method"] == {
        "type": "dpo",
        "dpo": {"hyperparameters": {"n_epochs": 4, "batch_size": 8, "learning_rate_multiplier": 0.5, "beta": 0.2}},
    }
    assert sent["model"] == "gpt-4o-mini-2024-07-18" and sent["suffix"] == "capitals-v1" and sent["seed"] == 11
    assert sent["integrations"] == [wandb]
    assert job.record is not None
    assert sent["metadata"] == {"team": "ml", "fth_job": job.record.id, "fth_key": job.record.idempotency_key}
    assert sent["validation_file"] is None


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_method_and_data_must_agree_before_anything_is_sent(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, method: str
) -> None:
    pairs, chat = write_dpo_jsonl(tmp_path / "pairs.jsonl", 12), write_chat_jsonl(tmp_path / "chat.jsonl", 12)
    spec = make_spec(tmp_path, method=method, data={"train": str(pairs if method == "sft" else chat)})
    says = "holds preference pairs; method is sft" if method == "sft" else "method dpo, but"
    with pytest.raises(ConfigError, match=re.escape(says)):
        api.submit(spec, "openai", store=store)
    assert emulator.upload_count == 0 and store.list_jobs() == []


def test_a_submit_that_fails_before_the_create_leaves_no_job_behind(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    emulator.faults.plan("401", on="POST /v1/files")  # the upload is refused: no job was asked for
    with pytest.raises(AuthError):
        api.submit(make_spec(tmp_path), "openai", store=store)
    assert store.list_jobs() == []  # not a "created" job in `fth list` for good
    emulator.faults.plan("404", on="POST /v1/fine_tuning/jobs")  # once a create was asked, the record stays
    with pytest.raises(ProviderError):
        api.submit(make_spec(tmp_path), "openai", store=store)
    [kept] = store.list_jobs()
    assert kept.remote_id is None and kept.error


def test_unset_hyperparameters_are_left_to_the_platform(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    job = submitted(tmp_path, store)
    body = json.loads(next(r.body for r in emulator.requests if r.path == "/v1/fine_tuning/jobs" and r.body))
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {}}}
    assert not {"suffix", "seed", "integrations", "trainingType"} & set(body)
    assert emulator.jobs[job.remote_id].wire["validation_file"] is not None


def test_a_finished_job_reports_model_metrics_events_and_checkpoints(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    job = submitted(tmp_path, store, hyperparameters={"epochs": 2})
    emulator.advance(job.remote_id, "succeeded")
    assert job.wait(sleep=no_sleep).status is JobStatus.SUCCEEDED

    result = job.result()
    assert result.model and result.model.startswith("ft:gpt-4o-mini-2024-07-18:")
    assert result.trained_tokens and result.trained_tokens > 0
    assert [row["step"] for row in result.history] == list(range(1, 25))  # 12 examples × 2 epochs
    assert {"train_loss", "train_mean_token_accuracy", "valid_loss"} <= set(result.metrics)
    assert result.metrics["train_loss"] == result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert store.get(job.local_id or "").actual_usd == pytest.approx(result.trained_tokens / 1e6 * 3.00)

    checkpoints = job.checkpoints()
    assert [c.step for c in checkpoints] == [12, 24]
    assert checkpoints[-1].location == f"{result.model}:ckpt-step-24" and checkpoints[-1].metrics["train_loss"]

    events = job.events()
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert events[0].message.startswith("Created fine-tuning job")
    metrics = [e for e in events if e.kind == "metrics"]
    assert len(metrics) == 24 and metrics[-1].data["step"] == 24
    assert job.events(since=metrics[5].time) == [e for e in events if e.time > metrics[5].time]
    assert [line for line in job.logs() if "successfully completed" in line]


def test_pause_and_resume(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    job = submitted(tmp_path, store)
    emulator.advance(job.remote_id, "running")
    emulator.clock.advance(emulator.lifecycle.step_s * 9)  # 9 of 36 steps (12 examples × 3 epochs)
    assert job.refresh().progress == 0.25
    assert job.pause().status is JobStatus.PAUSED
    emulator.clock.advance(3600)
    assert job.sync().status is JobStatus.PAUSED  # a paused job does not train
    assert job.resume().status is JobStatus.RUNNING
    emulator.advance(job.remote_id, "succeeded")
    assert job.sync().status is JobStatus.SUCCEEDED
    assert [s for s, _, _ in store.history(job.local_id or "")].count(JobStatus.PAUSED) == 1


def test_a_status_nobody_has_seen_maps_to_unknown(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    job = submitted(tmp_path, store)
    emulator.set_status(job.remote_id, "reticulating_splines")
    state = job.refresh()
    assert state.status is JobStatus.UNKNOWN and state.native == "reticulating_splines"


def test_a_rejected_training_file_fails_the_job_with_the_platform_reason(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    job = api.make_job("openai", make_spec(tmp_path), store=store)
    job.record = store.create_job(provider="openai", name="few", spec={}, spec_hash="s", data_hash="d")
    few = job.client.files.create(file=write_chat_jsonl(tmp_path / "few.jsonl", 5), purpose="fine-tune")
    store.update(job.record.id, remote_id=job.submit(PreparedData({"train": few.id}), job.record.idempotency_key))
    job.record = store.get(job.record.id)
    emulator.clock.advance(60)
    state = job.sync()
    assert state.status is JobStatus.FAILED
    assert state.error == "invalid_training_file: Training file has 5 example(s), but must have at least 10"


def test_predict_answers_with_the_fine_tuned_model(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    job = submitted(tmp_path, store)
    emulator.advance(job.remote_id, "succeeded")
    model = job.result().model
    assert model is not None
    assert job.predict(model, [{"role": "user", "content": "Capital of country number 3?"}]) == "City 3"


def test_rate_limits_wait_as_long_as_the_platform_says(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    job = submitted(tmp_path, store)
    emulator.faults.retry_after = 7
    emulator.faults.plan("429", 2)
    waited: list[float] = []
    assert job.retrying(job.refresh, sleep=waited.append).status is JobStatus.QUEUED
    assert waited == [7.0, 7.0]
    emulator.faults.retry_after = 86_400  # a day: said at once, not slept through
    emulator.faults.plan("429", 1)
    with pytest.raises(ProviderError, match="429"):
        job.retrying(job.refresh, sleep=waited.append)
    assert waited == [7.0, 7.0]


def test_large_files_go_through_the_uploads_api_once(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    spec = make_spec(tmp_path)
    job = api.make_job("openai", spec, store=store)
    assert isinstance(job, OpenAIJob)
    job.large_file_bytes = 1000
    prepared = job.prepare()
    completed = [u for u in emulator.uploads.values() if u["status"] == "completed"]
    assert len(completed) == 2 and emulator.upload_count == 2
    assert emulator.contents[prepared.files["train"]] == spec.data.train.read_bytes()
    assert api.make_job("openai", spec, store=store).prepare().files == prepared.files
    assert emulator.upload_count == 2


def test_a_remembered_upload_the_platform_deleted_is_uploaded_again(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    spec = make_spec(tmp_path)
    first = api.make_job("openai", spec, store=store).prepare().files
    emulator.files.clear()  # retention or a clean-up on the platform's side
    job = api.submit(spec, "openai", store=store)
    wire = emulator.jobs[job.remote_id].wire
    assert {wire["training_file"], wire["validation_file"]} == set(emulator.files)
    assert not set(first.values()) & set(emulator.files)


def test_retirement_warns_before_the_cutoff_and_refuses_after(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tmp_path)
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    before = api.plan(spec, "openai").problems
    assert [p.severity for p in before if "2027-01-06" in p.message] == ["warning"]
    assert not [p for p in before if p.severity == "error"]

    monkeypatch.setenv("FTH_TODAY", "2027-01-07")
    after = api.plan(spec, "openai").errors
    assert len(after) == 1 and "job creation cutoff was 2027-01-06" in after[0].message
    assert "fth rerun JOB --provider azure_openai | vertex | local" in after[0].message
    with pytest.raises(ConfigError, match="cutoff"):
        api.submit(spec, "openai", store=store)
    assert emulator.requests == [] and store.list_jobs() == []  # nothing sent, nothing recorded

    monkeypatch.setenv("FTH_TODAY", "27/11/2026")
    with pytest.raises(ConfigError, match="FTH_TODAY"):
        api.plan(spec, "openai")


def test_out_of_range_values_are_errors_and_unsupported_ones_warnings(tmp_path: Path) -> None:
    spec = make_spec(
        tmp_path,
        hyperparameters={"epochs": 60, "learning_rate": 1e-4, "beta": 0.1},
        lora={"rank": 8},
        providers={"openai": {"integrations": [{"type": "comet"}]}},
    )
    problems = {(p.severity, p.message.split(":")[0]) for p in api.make_job("openai", spec).check()}
    assert ("error", "hyperparameters.epochs=60") in problems
    assert ("error", "providers.openai.integrations[0]") in problems
    warned = {m.split(" ")[0] for s, m in problems if s == "warning"}
    assert {"lora", "hyperparameters.learning_rate", "hyperparameters.beta"} <= warned


def test_credentials_missing_or_wrong_are_auth_errors_without_the_key(
    tmp_path: Path, bound: OpenAIBinding, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(AuthError) as missing:
        api.make_job("openai", spec).account_id()
    assert "OPENAI_API_KEY" in (missing.value.hint or "")

    wrong = "not-the-right-key-9876543210"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with pytest.raises(AuthError) as refused:
        api.make_job("openai", spec).prepare()
    assert refused.value.exit_code == 3 and not refused.value.retryable
    assert wrong not in str(refused.value) and bound.secret not in str(refused.value)


def test_server_errors_are_retryable_and_validation_errors_are_not(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    job = submitted(tmp_path, store)
    emulator.advance(job.remote_id, "succeeded")
    with pytest.raises(ProviderError) as refused:
        job.cancel()
    assert not refused.value.retryable and refused.value.status_code == 400
    assert "cannot be cancelled" in refused.value.message
    emulator.faults.plan("timeout")
    with pytest.raises(ProviderError) as slow:
        job.refresh()
    assert slow.value.retryable


def test_a_cancel_the_platform_accepted_is_recorded_even_when_reading_the_job_fails(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = submitted(tmp_path, store)
    monkeypatch.setattr(OpenAIJob, "retry_sleep", staticmethod(lambda _: None))
    emulator.faults.plan("503", count=12, on=f"GET /v1/fine_tuning/jobs/{job.remote_id}")  # the reads after it fail
    state = api.control(job, "cancel")
    assert state.status is JobStatus.CANCELLED
    assert store.get(job.local_id or "").status is JobStatus.CANCELLED


def test_the_account_id_keeps_no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://user:hunter2-secret@proxy.example:8443/v1/?token=abc")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-stored-0123456789")
    monkeypatch.setenv("OPENAI_ORG_ID", "org-123")
    account = api.make_job("openai", make_spec(tmp_path)).account_id()
    assert account == "https://proxy.example:8443/v1|org-123"


def test_results_files_parse_plain_or_base64() -> None:
    csv_text = "step,train_loss,valid_loss\n1,2.5,\n2,1.5,1.7\n"
    expected = [{"step": 1.0, "train_loss": 2.5}, {"step": 2.0, "train_loss": 1.5, "valid_loss": 1.7}]
    assert parse_results(csv_text) == expected
    assert parse_results(base64.b64encode(csv_text.encode()).decode()) == expected


def test_following_the_logs_prints_every_event_once(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    job = submitted(tmp_path, store)
    emulator.seconds_per_request = 20  # the job moves on with every poll
    job.retry_sleep = lambda seconds: None  # type: ignore[method-assign]
    before = len(emulator.requests)
    lines = list(job.logs(follow=True))
    assert job.record is not None and job.record.status is JobStatus.SUCCEEDED
    stored = store.events(job.record.id)
    assert len(lines) == len(stored) == len(set(lines)) and "successfully completed" in lines[-1]
    per_poll = [0]  # event listings between one retrieval of the job and the next
    for r in emulator.requests[before:]:
        if r.path.endswith(job.remote_id):
            per_poll.append(0)
        elif r.path.endswith("/events"):
            per_poll[-1] += 1
    assert max(per_poll) == 1  # progress and new events share one listing; the printing asks for nothing more


def test_a_bad_validation_file_stops_prepare_before_any_upload(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    from finetune_hub.data import ConversionError

    spec = make_spec(tmp_path)
    with open(spec.data.validation or "", "a") as fh:
        fh.write('{"messages": [\n')  # a truncated last line
    with pytest.raises(ConversionError, match=r"valid\.jsonl"):
        api.make_job("openai", spec, store=store).prepare()
    assert emulator.files == {}


def test_a_validation_file_under_ten_examples_is_accepted_as_the_dry_run_said(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    """The ten-example minimum is the training file's; a validation file may be smaller."""
    spec = make_spec(tmp_path)
    write_chat_jsonl(Path(spec.data.validation or ""), 5, start=100)
    assert not api.plan(spec, "openai").errors
    job = api.submit(spec, "openai", store=store)
    assert emulator.jobs[job.remote_id].wire["validation_file"]


def test_a_dpo_job_reports_its_hyperparameters_from_its_method(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    pairs = write_dpo_jsonl(tmp_path / "data" / "pairs.jsonl", 12)
    job = submitted(tmp_path, store, method="dpo", data={"train": str(pairs), "validation": None},
                    hyperparameters={"epochs": 2})  # fmt: skip
    emulator.advance(job.remote_id, "succeeded")
    assert emulator.jobs[job.remote_id].wire["hyperparameters"] is None  # as the API: supervised jobs only
    assert job.wait(sleep=no_sleep).status is JobStatus.SUCCEEDED
    assert job.result().extra["hyperparameters"]["n_epochs"] == 2


def test_a_results_file_that_cannot_be_read_still_records_the_model(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    job = submitted(tmp_path, store)
    emulator.advance(job.remote_id, "succeeded")
    emulator.files.pop(emulator.jobs[job.remote_id].wire["result_files"][0])  # cleaned up, or a key without Files read
    assert job.wait(sleep=no_sleep).status is JobStatus.SUCCEEDED
    result = job.result()
    assert result.model and result.history == [] and "results file" in result.extra["results_unreadable"]
    assert store.get(job.local_id or "").model == result.model


def test_results_files_in_wrapped_base64_or_with_odd_cells_parse() -> None:
    csv_text = "step,train_loss,valid_loss\n1,2.5,n/a\n2,1.5,1.7\n"
    expected = [{"step": 1.0, "train_loss": 2.5}, {"step": 2.0, "train_loss": 1.5, "valid_loss": 1.7}]
    assert parse_results(base64.encodebytes(csv_text.encode()).decode()) == expected  # lines of 76, a last newline
    assert parse_results(base64.b64encode(csv_text.encode()).decode() + "\n") == expected
