"""The Vertex adapter against its emulators: the fake tuning API and gcp-storage-emulator.

The conformance suite covers the shared lifecycle; these tests cover what is Vertex's own: the request body,
settings from the spec or the environment, adapter sizes, labels, every JOB_STATE_*, results, prediction and
Google's error shapes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import api, data
from finetune_hub.errors import AuthError, ConfigError, InvalidRequest, NotFound, ProviderError, QuotaError
from finetune_hub.job import PreparedData
from finetune_hub.pricing import Catalog
from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.vertex import ADAPTER_SIZES, VertexJob, adapter_size, label_value
from tests.conformance.bind_vertex import LOCATION, PROJECT, TOKEN, vertex_client
from tests.conftest import no_sleep, write_chat_jsonl
from tests.emulators.vertex_server import STATES, VertexStack

ENV = ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "FTH_VERTEX_BUCKET", "GOOGLE_VERTEX_BASE_URL")


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexStack]:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    running = VertexStack().start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.storage_url)
    yield running
    running.stop()


def make_spec(tmp_path: Path, stack: VertexStack, settings: dict[str, Any] | None = None, **top: Any) -> FineTuneSpec:
    train = write_chat_jsonl(tmp_path / "train.jsonl", 12)
    valid = write_chat_jsonl(tmp_path / "valid.jsonl", 4, start=50)
    where = {"project": PROJECT, "location": LOCATION, "bucket": stack.bucket}
    body: dict[str, Any] = {
        "name": "support-bot",
        "base_model": {"vertex": "gemini-2.5-flash"},
        "data": {"train": str(train), "validation": str(valid)},
        "providers": {"vertex": {**where, **(settings or {})}},
    }
    return FineTuneSpec.from_dict({**body, **top})


def submit(spec: FineTuneSpec, stack: VertexStack, store: JobStore) -> VertexJob:
    job = api.submit(spec, "vertex", store=store, client=vertex_client(stack))
    assert isinstance(job, VertexJob)
    return job


# -- what is sent ------------------------------------------------------------------------------------


def test_one_job_whose_request_body_matches_the_spec(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    spec = make_spec(
        tmp_path,
        stack,
        settings={"labels": {"team": "ml-platform"}},
        hyperparameters={"epochs": 3, "learning_rate_multiplier": 0.5},
        lora={"rank": 8},
        suffix="support-v2",
    )
    job = submit(spec, stack, store)
    record = store.get(job.local_id or "")
    objects = stack.objects()
    assert len(objects) == 2 and stack.uploads() == 2
    train, valid = (f"gs://{stack.bucket}/finetune-hub/{data.content_hash(p)}.jsonl" for p in _converted(spec))
    assert stack.vertex.created == [
        {
            "baseModel": "gemini-2.5-flash",
            "supervisedTuningSpec": {
                "trainingDatasetUri": train,
                "validationDatasetUri": valid,
                "hyperParameters": {
                    "epochCount": 3,
                    "learningRateMultiplier": 0.5,
                    "adapterSize": "ADAPTER_SIZE_EIGHT",
                },
            },
            "tunedModelDisplayName": "support-v2",
            "description": f"finetune-hub {record.id} support-bot",
            "labels": {
                "team": "ml-platform",
                "tool": "finetune-hub",
                "fth-key": record.idempotency_key,
                "fth-job": record.id,
            },
        }
    ]
    assert record.remote_id == next(iter(stack.vertex.jobs))
    assert record.status is JobStatus.QUEUED and record.native_status == "JOB_STATE_PENDING"


def _converted(spec: FineTuneSpec) -> list[Path]:
    """The spec's files converted the way prepare() converts them (to hash them as the adapter does)."""
    out = []
    for role, path in (("train", spec.data.train), ("validation", spec.data.validation)):
        assert path is not None
        target = path.parent / "converted" / f"{role}.jsonl"
        data.convert(path, to="vertex", out=target)
        out.append(target)
    return out


def test_uploaded_file_is_the_vertex_conversion(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    spec = make_spec(tmp_path, stack)
    prepared = api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    lines = [json.loads(line) for line in stack.read(prepared.files["train"]).decode().splitlines()]
    assert len(lines) == 12
    assert lines[0]["systemInstruction"]["parts"] == [{"text": "You answer with the capital city only."}]
    assert [turn["role"] for turn in lines[0]["contents"]] == ["user", "model"]


def alpaca_csv(path: Path, n: int) -> Path:
    rows = "".join(f"Capital of country {i}?,,City {i}\n" for i in range(n))
    path.write_text("instruction,input,output\n" + rows, encoding="utf-8")
    return path


def test_the_declared_data_format_is_the_one_converted(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    train = alpaca_csv(tmp_path / "alpaca.csv", 12)

    def prepare(fmt: str) -> PreparedData:
        spec = make_spec(tmp_path, stack, data={"train": str(train), "format": fmt})
        return api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()

    prepared = prepare("alpaca")
    lines = [json.loads(line) for line in stack.read(prepared.files["train"]).decode().splitlines()]
    assert lines[3] == {
        "contents": [
            {"role": "user", "parts": [{"text": "Capital of country 3?"}]},
            {"role": "model", "parts": [{"text": "City 3"}]},
        ]
    }
    assert "train: records rewritten from the source format into OpenAI chat JSONL — 12" in prepared.report
    # a format the file is not in is refused, as the OpenAI adapter refuses it, before anything is uploaded
    uploaded = stack.uploads()
    with pytest.raises(data.ConversionError) as err:
        prepare("prompt_completion")
    assert {f.rule for f in err.value.findings} == {"format.mixed"}
    assert stack.uploads() == uploaded


def test_a_validation_split_of_a_declared_format_is_converted(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    train = alpaca_csv(tmp_path / "alpaca.csv", 12)
    spec = make_spec(tmp_path, stack, data={"train": str(train), "format": "alpaca", "validation_split": 0.25})
    prepared = api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    lines = {role: stack.read(uri).decode().splitlines() for role, uri in prepared.files.items()}
    assert {role: len(found) for role, found in lines.items()} == {"train": 9, "validation": 3}
    assert all(json.loads(line)["contents"][1]["role"] == "model" for found in lines.values() for line in found)


@pytest.mark.parametrize(("rank", "size"), [(1, 1), (3, 4), (4, 4), (6, 8), (12, 16), (16, 16), (24, 32), (256, 32)])
def test_lora_rank_becomes_the_nearest_adapter_size(rank: int, size: int, tmp_path: Path, stack: VertexStack) -> None:
    assert adapter_size(rank) == size
    problems = VertexJob(make_spec(tmp_path, stack, lora={"rank": rank})).check()
    warned = [p for p in problems if "adapter_size" in p.message]
    assert [p.severity for p in warned] == ([] if rank == size else ["warning"])
    job = VertexJob(make_spec(tmp_path, stack, lora={"rank": rank}), client=vertex_client(stack))
    job.submit(PreparedData({"train": "gs://b/t.jsonl"}), "k")
    assert stack.vertex.created[-1]["supervisedTuningSpec"]["hyperParameters"]["adapterSize"] == ADAPTER_SIZES[size]


def test_settings_vertex_cannot_honour_are_warned(tmp_path: Path, stack: VertexStack) -> None:
    spec = make_spec(
        tmp_path,
        stack,
        hyperparameters={"learning_rate": 1e-4, "batch_size": 8, "beta": 0.1},
        lora={"rank": 8, "alpha": 32},
        seed=7,
    )
    problems = VertexJob(spec).check()
    assert all(p.severity == "warning" for p in problems)
    text = "\n".join(p.message for p in problems)
    for field in ("learning_rate", "batch_size", "beta", "lora.alpha", "seed"):
        assert field in text


def test_label_values_follow_vertex_rules() -> None:
    for raw in ("fth-0123abcd", "My Job/ID.with:ODD chars", "x" * 100):
        value = label_value(raw)
        assert re.fullmatch(r"[a-z0-9_-]{0,63}", value)
    assert label_value("fth-0123abcd") == "fth-0123abcd"


def test_invalid_settings_labels_are_errors(tmp_path: Path, stack: VertexStack) -> None:
    spec = make_spec(tmp_path, stack, settings={"labels": {"Team": "ML"}})
    assert [p.severity for p in VertexJob(spec).check()] == ["error"]


# -- where: project, location, bucket ----------------------------------------------------------------


@pytest.mark.parametrize("missing", ["project", "location", "bucket"])
def test_missing_setting_fails_before_any_upload(
    missing: str, tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    spec = make_spec(tmp_path, stack)
    settings = {k: v for k, v in spec.settings_for("vertex").items() if k != missing}
    spec = make_spec(tmp_path, stack, providers={"vertex": settings})
    with pytest.raises(ConfigError) as err:
        submit(spec, stack, store)
    assert f"no {missing} set" in str(err.value) and "nothing was uploaded" in str(err.value)
    assert stack.uploads() == 0 and stack.vertex.requests == []


def test_project_location_and_bucket_from_the_environment(
    tmp_path: Path, stack: VertexStack, store: JobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", LOCATION)
    monkeypatch.setenv("FTH_VERTEX_BUCKET", f"gs://{stack.bucket}/team/tuning")
    spec = make_spec(tmp_path, stack, providers={"vertex": {}})
    assert VertexJob(spec).check() == []
    prepared = api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    assert all(uri.startswith(f"gs://{stack.bucket}/team/tuning/") for uri in prepared.files.values())


def test_missing_bucket_is_a_config_error_with_a_fix(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    spec = make_spec(tmp_path, stack, settings={"bucket": "no-such-bucket"})
    with pytest.raises(ConfigError) as err:
        api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    assert "gs://no-such-bucket" in err.value.message and "gcloud storage buckets create" in (err.value.hint or "")


def test_an_object_deleted_from_the_bucket_is_uploaded_again(tmp_path: Path, stack: VertexStack) -> None:
    spec, store = make_spec(tmp_path, stack), JobStore(tmp_path / "a.db")
    job = api.make_job("vertex", spec, store=store, client=vertex_client(stack))
    first = job.prepare()
    bucket, name = first.files["train"].removeprefix("gs://").split("/", 1)
    job.sdk.storage.bucket(bucket).blob(name).delete()  # a lifecycle rule, a cleanup
    again = api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    assert again.files == first.files and stack.uploads() == 3  # the store's memory was checked, not trusted


def test_an_object_already_in_the_bucket_is_not_uploaded_again(tmp_path: Path, stack: VertexStack) -> None:
    spec = make_spec(tmp_path, stack)
    first = api.make_job("vertex", spec, store=JobStore(tmp_path / "a.db"), client=vertex_client(stack)).prepare()
    # another machine (its own job store) finds the content-addressed objects already there
    again = api.make_job("vertex", spec, store=JobStore(tmp_path / "b.db"), client=vertex_client(stack)).prepare()
    assert again.files == first.files and stack.uploads() == 2


# -- the job -----------------------------------------------------------------------------------------

EXPECTED = {
    "JOB_STATE_UNSPECIFIED": JobStatus.UNKNOWN,
    "JOB_STATE_QUEUED": JobStatus.QUEUED,
    "JOB_STATE_PENDING": JobStatus.QUEUED,
    "JOB_STATE_RUNNING": JobStatus.RUNNING,
    "JOB_STATE_UPDATING": JobStatus.RUNNING,
    "JOB_STATE_PAUSED": JobStatus.PAUSED,
    "JOB_STATE_CANCELLING": JobStatus.CANCELLING,
    "JOB_STATE_SUCCEEDED": JobStatus.SUCCEEDED,
    "JOB_STATE_PARTIALLY_SUCCEEDED": JobStatus.SUCCEEDED,
    "JOB_STATE_FAILED": JobStatus.FAILED,
    "JOB_STATE_EXPIRED": JobStatus.FAILED,
    "JOB_STATE_CANCELLED": JobStatus.CANCELLED,
    "JOB_STATE_INVENTED_LATER": JobStatus.UNKNOWN,
}


def test_expected_table_covers_every_emulated_state() -> None:
    assert set(STATES) <= set(EXPECTED)


@pytest.mark.filterwarnings("ignore:JOB_STATE_INVENTED_LATER is not a valid JobState")
def test_every_job_state(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    for native, status in EXPECTED.items():
        stack.vertex.advance(job.remote_id, native)
        state = job.refresh()
        assert (state.native, state.status) == (native, status)
        assert bool(state.error) == (status is JobStatus.FAILED), native


def test_partial_success_succeeds_with_a_warning_event(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.clock.advance(60)
    stack.vertex.advance(job.remote_id, "running")
    assert job.sync().detail == "TUNING_JOB_STATE_TUNING"
    stack.vertex.clock.advance(600)
    stack.vertex.advance(job.remote_id, "partially_succeeded")
    assert job.wait(sleep=no_sleep, timeout=10).status is JobStatus.SUCCEEDED
    events = [e for _, e in store.events(job.local_id or "")]
    (warning,) = [e for e in events if e.level == "warn"]
    assert "JOB_STATE_PARTIALLY_SUCCEEDED" in warning.message and "did not complete" in warning.message
    assert [e.id for e in events] == ["created", "started", "stage-TUNING_JOB_STATE_TUNING", "ended"]


def test_expired_job_fails_with_a_reason(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.advance(job.remote_id, "expired")
    state = job.wait(sleep=no_sleep, timeout=10)
    assert state.status is JobStatus.FAILED and "JOB_STATE_EXPIRED" in (state.error or "")
    assert "JOB_STATE_EXPIRED" in (store.get(job.local_id or "").error or "")


def test_result_names_model_endpoint_checkpoints_and_data_stats(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    job = submit(make_spec(tmp_path, stack, hyperparameters={"epochs": 2}), stack, store)
    stack.vertex.advance(job.remote_id, "succeeded")
    job.wait(sleep=no_sleep, timeout=10)
    tuned = stack.vertex.find(job.remote_id)["tunedModel"]
    result = job.result()
    assert (result.model, result.artifact) == (tuned["endpoint"], tuned["model"])
    assert result.trained_tokens == stack.vertex.billable_tokens * 2
    assert result.extra["tuning_data_stats"]["total_billable_token_count"] == stack.vertex.billable_tokens
    assert result.extra["experiment"] and result.extra["gcs_metrics_uri"].startswith("gs://")
    assert [(c.id, c.step, c.location) for c in job.checkpoints()] == [
        (c["checkpointId"], int(c["step"]), c["endpoint"]) for c in tuned["checkpoints"]
    ]
    price = Catalog.load().price("vertex", "gemini-2.5-flash")
    assert price is not None
    record = store.get(job.local_id or "")
    assert record.model == tuned["endpoint"]
    assert record.actual_usd == pytest.approx(stack.vertex.billable_tokens * 2 / 1e6 * price.usd)


def test_epochs_left_to_vertex_are_counted_from_its_checkpoints(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)  # no epochs: Vertex chooses
    stack.vertex.advance(job.remote_id, "succeeded")
    job.wait(sleep=no_sleep, timeout=10)
    epochs = max(int(c["epoch"]) for c in stack.vertex.find(job.remote_id)["tunedModel"]["checkpoints"])
    result = job.result()
    assert result.extra["epochs"] == epochs and result.trained_tokens == stack.vertex.billable_tokens * epochs
    assert (store.get(job.local_id or "").actual_usd or 0) > 0
    # moved elsewhere, the job trains as long as it did here (recorded where every adapter records what it picked)
    from finetune_hub.rerun import plan_rerun

    moved = plan_rerun(job.local_id or "", "openai", base_model="gpt-4o-mini-2024-07-18", store=store)
    assert {c.field: c.after for c in moved.changes}["hyperparameters.epochs"] == epochs


def test_retried_submit_finds_its_job_among_others(tmp_path: Path, stack: VertexStack) -> None:
    spec = make_spec(tmp_path, stack)
    prepared = PreparedData({"train": f"gs://{stack.bucket}/t.jsonl"})
    names = [VertexJob(spec, client=vertex_client(stack)).submit(prepared, f"fth-key-{i}") for i in range(3)]
    again = VertexJob(spec, client=vertex_client(stack)).submit(prepared, "fth-key-1")
    assert again == names[1] and len(stack.vertex.jobs) == 3
    listed = [r for r in stack.vertex.requests if r.method == "GET" and r.path.endswith("/tuningJobs")]
    assert listed[-1].arg("filter") == 'labels.fth-key="fth-key-1"'


def test_a_bare_job_id_is_completed_from_the_settings(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    store.update(job.local_id or "", remote_id=job.remote_id.rsplit("/", 1)[-1])
    reopened = api.open_job(job.local_id or "", store=store, client=vertex_client(stack))
    assert reopened.refresh().native == "JOB_STATE_PENDING"


def test_cancelling_a_finished_job_is_refused_with_googles_reason(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.advance(job.remote_id, "succeeded")
    with pytest.raises(InvalidRequest) as err:
        job.cancel()
    assert "FAILED_PRECONDITION" in err.value.message and "JOB_STATE_SUCCEEDED" in err.value.message


def test_control_leaves_a_job_that_finished_since_alone_and_says_so(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.advance(job.remote_id, "succeeded")  # the store still says queued
    state = api.control(job, "cancel")  # from Python as from `fth cancel`: no refusal to pass on
    assert (state.status, state.detail) == (JobStatus.SUCCEEDED, api.LEFT_ALONE)
    assert not [r for r in stack.vertex.requests if r.path.endswith(":cancel")]
    with pytest.raises(ConfigError, match="already succeeded: there is nothing to resume"):
        api.control(job, "resume")


def test_predict_on_the_tuned_endpoint_and_on_the_base_model(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.advance(job.remote_id, "succeeded")
    endpoint = job.result().model or ""
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    tuned = job.predict(endpoint, chat)
    assert tuned == f"[tuned:{endpoint.rsplit('/', 1)[-1]}] Capital of France? (system: Be brief.)"
    assert job.predict("gemini-2.5-flash", chat[1:]) == "[base:gemini-2.5-flash] Capital of France?"
    with pytest.raises(NotFound):
        job.predict(f"projects/{PROJECT}/locations/{LOCATION}/endpoints/404", chat)


# -- errors ------------------------------------------------------------------------------------------


def test_google_errors_become_the_fth_family(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.denied_projects.add(PROJECT)
    with pytest.raises(AuthError) as denied:
        job.refresh()
    assert "PERMISSION_DENIED" in denied.value.message and not denied.value.retryable
    stack.vertex.denied_projects.clear()
    stack.vertex.faults.plan("401")
    with pytest.raises(AuthError) as auth:
        job.refresh()
    assert "UNAUTHENTICATED" in auth.value.message and TOKEN not in str(auth.value)
    stack.vertex.faults.retry_after = 7
    stack.vertex.faults.plan("429")
    with pytest.raises(QuotaError) as quota:
        job.refresh()
    assert quota.value.retry_after == 7.0
    stack.vertex.faults.plan("timeout")
    with pytest.raises(ProviderError) as slow:
        job.refresh()
    assert slow.value.retryable


def test_invalid_argument_carries_googles_message(tmp_path: Path, stack: VertexStack) -> None:
    spec = make_spec(tmp_path, stack, base_model="gpt-4o-mini")  # one model for every platform: wrong here
    job = VertexJob(spec, client=vertex_client(stack))
    with pytest.raises(InvalidRequest) as err:
        job.retrying(lambda: job.submit(PreparedData({"train": "gs://b/t.jsonl"}), "k"), sleep=no_sleep)
    assert "INVALID_ARGUMENT" in err.value.message and "gpt-4o-mini is not supported" in err.value.message
    assert not err.value.retryable and stack.vertex.jobs == {}


def test_storage_errors_are_translated_and_retried(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    assert stack.gcs is not None
    spec = make_spec(tmp_path, stack)
    stack.gcs.faults.plan("401", on="POST /upload/")
    with pytest.raises(AuthError):
        api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    stack.gcs.faults.plan("429", count=2, on="POST /upload/")  # Retry-After: 0, so no waiting
    prepared = api.make_job("vertex", spec, store=store, client=vertex_client(stack)).prepare()
    assert set(prepared.files) == {"train", "validation"} and len(stack.objects()) == 2


def test_estimate_uses_the_catalog_price_per_million_tokens_times_epochs(tmp_path: Path, stack: VertexStack) -> None:
    spec = make_spec(tmp_path, stack, hyperparameters={"epochs": 4})
    planned = api.plan(spec, "vertex")
    estimate = planned.estimate
    assert estimate is not None and estimate.unit == "1M tokens"
    stats = data.stats(spec.data.train, model="gemini-2.5-flash")
    price = Catalog.load().price("vertex", "gemini-2.5-flash")
    assert price is not None and estimate.unit_price_usd == price.usd
    assert estimate.billed_tokens == stats.tokens * 4
    assert estimate.total_usd == pytest.approx(stats.tokens * 4 / 1e6 * price.usd)


def test_one_sync_reads_the_job_once(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    job = submit(make_spec(tmp_path, stack), stack, store)
    stack.vertex.advance(job.remote_id, "succeeded")
    before = len(stack.vertex.requests)
    assert job.sync().status is JobStatus.SUCCEEDED and job.record is not None and job.record.result is not None
    reads = [r for r in stack.vertex.requests[before:] if r.method == "GET" and r.path.endswith(job.remote_id)]
    assert len(reads) == 1  # refresh, events and result share one answer
