"""A whole lifecycle with 30% of the platform's responses turned into 429s, 500s and timeouts still ends
with exactly one remote job and one upload per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_hub import api
from finetune_hub.job import FineTuneJob
from finetune_hub.records import JobStatus
from finetune_hub.store import JobStore
from tests.conformance.bind_openai import AzureOpenAIBinding, OpenAIBinding
from tests.conftest import write_chat_jsonl
from tests.emulators.harness import Faults


@pytest.mark.parametrize("binding", [OpenAIBinding, AzureOpenAIBinding], ids=["openai", "azure_openai"])
def test_lifecycle_under_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binding: type[OpenAIBinding]) -> None:
    monkeypatch.setattr(FineTuneJob, "retry_sleep", staticmethod(lambda _: None))  # backoff costs no time
    bound = binding()
    bound.start(tmp_path, monkeypatch)
    emulator = bound.emulator
    # seeded, so every run meets the same 19 faults in its first 45 requests (3 of them timeouts)
    emulator.faults = Faults(rate=0.3, kinds=("429", "500", "timeout"), seed=5)
    emulator.seconds_per_request = 2  # the job moves on as the adapter polls
    try:
        spec = bound.spec(
            write_chat_jsonl(tmp_path / "train.jsonl", 12), write_chat_jsonl(tmp_path / "valid.jsonl", 10, start=50)
        )
        store = JobStore(tmp_path / "jobs.db")
        job = api.submit(spec, bound.provider, store=store)
        state = job.wait(sleep=lambda _: None, timeout=600)
        assert state.status is JobStatus.SUCCEEDED
        assert job.record is not None and job.record.result is not None and job.record.model
        question = [{"role": "user", "content": "Capital of country number 4?"}]
        model = bound.served(job.record.model)
        assert job.retrying(lambda: job.predict(model, question)) == "City 4"
    finally:
        emulator.faults.rate = 0
        bound.stop()
    assert len(emulator.jobs) == 1
    assert emulator.upload_count == 2
    assert {"429", "500", "timeout"} <= set(emulator.faults.injected)
