"""The behaviour written once in FineTuneJob, exercised through a minimal adapter whose "platform" is a
scripted sequence of states (the adapters' own lifecycles run in tests/conformance against emulators)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from finetune_hub.errors import FthError, InvalidRequest, QuotaError
from finetune_hub.job import Backoff, FineTuneJob, JobState, PreparedData
from finetune_hub.records import Capability, Checkpoint, CostEstimate, JobEvent, JobResult, JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore


class ScriptedJob(FineTuneJob):
    provider = "scripted"
    capabilities: ClassVar[dict[Capability, str | None]] = {c: None for c in Capability} | {
        Capability.PAUSE: "the script cannot pause"
    }
    status_map: ClassVar[dict[str, JobStatus]] = {
        "queued": JobStatus.QUEUED,
        "running": JobStatus.RUNNING,
        "done": JobStatus.SUCCEEDED,
    }

    def connect(self) -> Any:
        return {"states": ["queued", "running", "running", "done"], "errors": []}

    def check(self) -> list[Any]:
        return []

    def estimate(self, stats: Any) -> CostEstimate:
        return CostEstimate("scripted", "m", 1, "job", 1.0, 1.0, "2026-11-27", "test", True)

    def prepare(self) -> PreparedData:
        return PreparedData({"train": "f1"})

    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        return "remote-1"

    def refresh(self) -> JobState:
        if self.client["errors"]:
            raise self.client["errors"].pop(0)
        native = self.client["states"].pop(0) if len(self.client["states"]) > 1 else self.client["states"][0]
        return JobState(self.map_status(native), native)

    def events(self, since: datetime | None = None) -> list[JobEvent]:
        all_events = [JobEvent(datetime(2026, 11, 27, 10, i, tzinfo=UTC), f"step {i}", id=str(i)) for i in range(3)]
        return [e for e in all_events if since is None or e.time > since]

    def checkpoints(self) -> list[Checkpoint]:
        return []

    def cancel(self) -> JobState:
        return JobState(JobStatus.CANCELLED, "cancelled")

    def result(self) -> JobResult:
        return JobResult(model="tuned-1", trained_tokens=1000, metrics={"train_loss": 0.1})


def make(tmp_path: Path) -> tuple[ScriptedJob, JobStore]:
    spec = FineTuneSpec.from_dict({"name": "t", "base_model": "m", "data": {"train": "x.jsonl"}})
    store = JobStore(tmp_path / "jobs.db")
    job = ScriptedJob(spec, store=store)
    record = store.create_job(
        provider="scripted", name="t", spec=spec.model_dump(mode="json"), spec_hash="s", data_hash="d"
    )
    store.update(record.id, remote_id="remote-1", status=JobStatus.QUEUED)
    job.record = store.get(record.id)
    return job, store


def test_wait_persists_status_events_and_result(tmp_path: Path) -> None:
    job, store = make(tmp_path)
    sleeps: list[float] = []
    state = job.wait(sleep=sleeps.append, backoff=Backoff(initial=1, factor=2, maximum=3))
    assert state.status is JobStatus.SUCCEEDED
    record = store.get(job.local_id or "")
    assert record.model == "tuned-1" and record.result and record.result["trained_tokens"] == 1000
    assert [e.message for _, e in store.events(record.id)] == ["step 0", "step 1", "step 2"]
    assert [(s.value, n) for s, n, _ in store.history(record.id)] == [
        ("created", None),
        ("queued", None),
        ("queued", "queued"),
        ("running", "running"),
        ("succeeded", "done"),
    ]
    assert sleeps == [1, 1, 2]  # reset when the status changed, then grew


def test_wait_times_out(tmp_path: Path) -> None:
    job, _ = make(tmp_path)
    job.client["states"] = ["running"]
    ticks = iter(range(100))
    with pytest.raises(FthError, match="timed out"):
        job.wait(timeout=5, sleep=lambda _: None, clock=lambda: float(next(ticks)))


def test_retrying_honours_retry_after_and_stops_on_permanent_errors(tmp_path: Path) -> None:
    job, _ = make(tmp_path)
    job.client["errors"] = [QuotaError("slow down", retry_after=7.0), QuotaError("again")]
    sleeps: list[float] = []
    assert job.retrying(job.refresh, sleep=sleeps.append).status is JobStatus.QUEUED
    assert sleeps == [7.0, 1.0]
    job.client["errors"] = [InvalidRequest("bad field")]
    with pytest.raises(InvalidRequest):
        job.retrying(job.refresh, sleep=sleeps.append)
    assert len(sleeps) == 2


def test_unknown_native_status_maps_to_unknown_and_unsupported_features_say_why(tmp_path: Path) -> None:
    job, _ = make(tmp_path)
    assert job.map_status("brand-new-state") is JobStatus.UNKNOWN
    job.client["states"] = ["brand-new-state"]
    assert job.sync().status is JobStatus.UNKNOWN
    with pytest.raises(FthError, match="does not support pause: the script cannot pause"):
        job.pause()


def test_the_interface_is_abstract() -> None:
    class Incomplete(FineTuneJob):
        provider = "incomplete"

    spec = FineTuneSpec.from_dict({"name": "t", "base_model": "m", "data": {"train": "x.jsonl"}})
    with pytest.raises(TypeError, match="abstract"):
        Incomplete(spec)  # type: ignore[abstract]


def test_to_record_is_plain_json(tmp_path: Path) -> None:
    import json

    job, _ = make(tmp_path)
    job.wait(sleep=lambda _: None)
    record = json.loads(json.dumps(job.to_record()))
    assert record["status"] == "succeeded" and record["provider"] == "scripted" and record["model"] == "tuned-1"
