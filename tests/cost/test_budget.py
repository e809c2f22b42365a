"""Budget guardrails: refusing an over-budget submit, and auto-cancel once the running cost passes the
budget, through the base class's `sync` with a scripted platform that reports progress."""

from __future__ import annotations

import datetime as dt
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from finetune_hub import cost
from finetune_hub.job import FineTuneJob, JobState, PreparedData
from finetune_hub.records import Capability, Checkpoint, CostEstimate, JobEvent, JobResult, JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore


class ProgressJob(FineTuneJob):
    """A platform whose job reports progress 0.2, 0.4, ... and stops when cancelled."""

    provider = "scripted"
    capabilities: ClassVar[dict[Capability, str | None]] = {c: None for c in Capability}
    status_map: ClassVar[dict[str, JobStatus]] = {"running": JobStatus.RUNNING, "cancelled": JobStatus.CANCELLED}
    cancelled = False

    def connect(self) -> Any:
        return iter([0.2, 0.4, 0.6, 0.8, 1.0])

    def check(self) -> list[Any]:
        return []

    def estimate(self, stats: Any) -> CostEstimate:
        raise NotImplementedError

    def prepare(self) -> PreparedData:
        return PreparedData({})

    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        return "r1"

    def refresh(self) -> JobState:  # one describe per sync, as the adapters do
        return self.fetched("job", self._describe)

    def _describe(self) -> JobState:
        if self.cancelled:
            return JobState(JobStatus.CANCELLED, "cancelled")
        return JobState(JobStatus.RUNNING, "running", progress=next(self.client))

    def events(self, since: datetime | None = None) -> list[JobEvent]:
        return []

    def checkpoints(self) -> list[Checkpoint]:
        return []

    def cancel(self) -> JobState:  # as SageMaker's: look, stop, look again
        if self.refresh().status.terminal:
            return self.refresh()
        self.cancelled = True
        return self.refresh()

    def result(self) -> JobResult:
        return JobResult()


def started(budget: dict[str, Any], estimated: float) -> tuple[ProgressJob, JobStore]:
    spec = FineTuneSpec.from_dict({"name": "b", "base_model": "m", "data": {"train": "x.jsonl"}, "budget": budget})
    store = JobStore()
    record = store.create_job(
        provider="scripted", name="b", spec=spec.model_dump(mode="json"), spec_hash="s", data_hash="d",
        estimated_usd=estimated,
    )  # fmt: skip
    store.update(record.id, remote_id="r1", status=JobStatus.RUNNING)
    job = ProgressJob(spec, store=store, record=store.get(record.id))
    return job, store


def test_auto_cancel_when_the_running_cost_passes_the_budget() -> None:
    job, store = started({"max_usd": 5.0, "auto_cancel": True}, estimated=10.0)
    assert job.sync().status is JobStatus.RUNNING  # 0.2 × $10 = $2
    assert job.sync().status is JobStatus.RUNNING  # $4
    state = job.sync()  # $6 > $5: cancelled, and the cancel's last look is not the sync's earlier one
    assert state.status is JobStatus.CANCELLED and job.cancelled
    assert "auto-cancel: running cost $6.00 passed the budget of $5.00" in (state.error or "")
    assert any("auto-cancel" in e.message for _, e in store.events(job.record.id))  # type: ignore[union-attr]
    assert job.sync().status is JobStatus.CANCELLED
    assert "auto-cancel" in (store.get(job.record.id).error or "")  # type: ignore[union-attr]  # the reason stays


def test_no_auto_cancel_unless_asked() -> None:
    job, _ = started({"max_usd": 5.0}, estimated=10.0)
    for _ in range(4):
        assert job.sync().status is JobStatus.RUNNING
    assert not job.cancelled


def test_time_billed_running_cost_grows_with_the_clock(fth_home: Path) -> None:
    fth_home.mkdir(parents=True)
    (fth_home / "catalog.yaml").write_text(
        "platforms:\n  scripted: {priced_by: instance, default: big}\n"
        "training:\n  - {provider: scripted, model: big, usd: 10.0, unit: instance-hour, as_of: 2026-11-01,"
        " source: test, verified: true}\n"
    )
    job, store = started({"max_usd": 5.0, "auto_cancel": True}, estimated=1.0)
    running_at = dt.datetime.fromisoformat(store.history(job.record.id)[-1][2])  # type: ignore[union-attr]
    state = JobState(JobStatus.RUNNING, "running")
    assert cost.running_cost(job, state, now=running_at + dt.timedelta(minutes=30)) == pytest.approx(5.0)
    assert cost.running_cost(job, state, now=running_at + dt.timedelta(hours=2)) == pytest.approx(20.0)


def test_an_over_budget_submit_is_refused_unless_confirmed(tmp_path: Path) -> None:
    from finetune_hub import api
    from finetune_hub.errors import ConfigError
    from finetune_hub.registry import BUILTIN
    from tests.conftest import write_chat_jsonl

    if "openai" not in BUILTIN:
        pytest.skip("needs the openai adapter")
    train = write_chat_jsonl(tmp_path / "train.jsonl", n=20)
    spec = FineTuneSpec.from_dict(
        {"name": "b", "base_model": "gpt-4o-2024-08-06", "data": {"train": str(train)}, "budget": {"max_usd": 0.0001}}
    )
    with pytest.raises(ConfigError, match="over the budget of"):
        api.submit(spec, "openai")
    assert JobStore().list_jobs() == []  # nothing recorded, nothing sent


def test_a_dry_run_says_an_over_budget_submit_would_be_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from finetune_hub.cli import main
    from tests.conftest import write_chat_jsonl

    write_chat_jsonl(tmp_path / "train.jsonl", n=20)
    spec = {
        "name": "b",
        "base_model": "gpt-4o-2024-08-06",
        "data": {"train": "train.jsonl"},
        "budget": {"max_usd": 1e-4},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main(["submit", "--provider", "openai", str(tmp_path / "spec.yaml"), "--dry-run"]) == 2
    assert "over the budget of" in capsys.readouterr().out
    assert main(["submit", "--provider", "openai", str(tmp_path / "spec.yaml"), "--dry-run", "--yes"]) == 0
    assert JobStore().list_jobs() == []
