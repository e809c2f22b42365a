from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from finetune_hub.errors import ConfigError
from finetune_hub.records import JobEvent, JobStatus
from finetune_hub.store import MIGRATIONS, JobStore


def new_job(store: JobStore, **overrides: object):  # type: ignore[no-untyped-def]
    fields = {"provider": "openai", "name": "n", "spec": {"name": "n"}, "spec_hash": "s", "data_hash": "d"}
    fields.update(overrides)
    return store.create_job(**fields)  # type: ignore[arg-type]


def test_wal_mode_schema_version_and_location(fth_home: Path) -> None:
    store = JobStore()
    assert store.path == fth_home / "jobs.db"
    assert store.schema_version == len(MIGRATIONS)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_job_roundtrip_history_and_lookup(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = new_job(store, estimated_usd=1.5)
    assert job.status is JobStatus.CREATED and job.idempotency_key.startswith("fth-")
    store.update(job.id, remote_id="ftjob-1", status=JobStatus.QUEUED, native_status="validating_files")
    store.update(job.id, status=JobStatus.QUEUED, native_status="queued")
    store.update(job.id, status=JobStatus.QUEUED, native_status="queued")  # no change: no history row
    store.update(
        job.id,
        status=JobStatus.SUCCEEDED,
        native_status="succeeded",
        model="ft:x",
        actual_usd=1.2,
        result={"model": "ft:x", "metrics": {"train_loss": 0.5}},
    )
    got = store.get("ftjob-1")
    assert got.id == job.id and got.model == "ft:x" and got.result == {"model": "ft:x", "metrics": {"train_loss": 0.5}}
    assert store.get(job.id[:7]).id == job.id
    for not_a_prefix in (job.id[:7].replace("-", "_"), "%" + job.id[4:7]):  # no LIKE wildcards
        with pytest.raises(ConfigError, match="no job"):
            store.get(not_a_prefix)
    assert [(s.value, n) for s, n, _ in store.history(job.id)] == [
        ("created", None),
        ("queued", "validating_files"),
        ("queued", "queued"),
        ("succeeded", "succeeded"),
    ]
    with pytest.raises(ConfigError, match="no job"):
        store.get("nope")
    with pytest.raises(ValueError):
        store.update(job.id, spec_hash="x")


def test_unsent_jobs_are_found_for_a_retry(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = new_job(store, account="acct-1")
    assert store.find_unsent("openai", "s", "d", "acct-1") == job
    assert store.find_unsent("vertex", "s", "d", "acct-1") is None
    assert store.find_unsent("openai", "s", "d", "acct-2") is None  # another account never saw this key
    store.update(job.id, remote_id="r1", status=JobStatus.QUEUED)
    assert store.find_unsent("openai", "s", "d", "acct-1") is None


def test_events_are_deduplicated_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-verysecretvalue")
    store = JobStore(tmp_path / "jobs.db")
    job = new_job(store)
    t = datetime(2026, 11, 27, tzinfo=UTC)
    events = [JobEvent(t, "step 1", id="e1"), JobEvent(t, "used key sk-test-verysecretvalue", id="e2")]
    assert store.add_events(job.id, events) == 2
    assert store.add_events(job.id, events) == 0
    messages = [e.message for _, e in store.events(job.id)]
    assert messages[0] == "step 1" and "verysecret" not in messages[1]
    last = store.last_event(job.id)
    assert last is not None and last.id == "e2"
    assert store.last_event("fth-none") is None
    store.update(job.id, error="401 for key sk-test-verysecretvalue")
    assert "verysecret" not in (store.get(job.id).error or "")


def test_uploads_are_keyed_by_content_provider_and_account(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    store.record_upload("h1", "openai", "acct-a", "file-1")
    assert store.find_upload("h1", "openai", "acct-a") == "file-1"
    assert store.find_upload("h1", "openai", "acct-b") is None
    assert store.find_upload("h1", "azure_openai", "acct-a") is None
    store.forget_upload("h1", "openai", "acct-a")
    assert store.find_upload("h1", "openai", "acct-a") is None


def test_migrates_an_old_store_and_refuses_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    sqlite3.connect(path).close()  # version 0: empty file
    assert JobStore(path).schema_version == len(MIGRATIONS)
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(ConfigError, match="newer"):
        JobStore(path).list_jobs()


WORKER = """
import sys
from finetune_hub.store import JobStore
store = JobStore(sys.argv[1])
job_id, worker = sys.argv[2], int(sys.argv[3])
from finetune_hub.records import JobEvent, JobStatus, utcnow
for i in range(100):
    store.update(job_id, status=JobStatus.RUNNING, native_status=f"w{worker}-{i}")
    store.add_events(job_id, [JobEvent(utcnow(), f"w{worker} u{i}", id=f"w{worker}-{i}")])
"""


@pytest.mark.slow
def test_eight_processes_each_making_100_updates(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    job = new_job(JobStore(path))
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(path), job.id, str(w)], stderr=subprocess.PIPE)
        for w in range(8)
    ]
    errors = [p.communicate()[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    expected = {f"w{w}-{i}" for w in range(8) for i in range(100)}
    store = JobStore(path)
    assert {e.id for _, e in store.events(job.id)} == expected
    assert {native for _, native, _ in store.history(job.id)} - {None} == expected
