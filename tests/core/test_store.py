from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    # what fth writes itself (a rerun link) is stamped with this machine's clock: a sync must still ask the
    # platform for its events since its own last one, or events stamped earlier but not fetched are never fetched
    later = datetime(2026, 11, 28, tzinfo=UTC)
    store.add_events(job.id, [JobEvent(later, "rerun on vertex as fth-2", id="fth-rerun-as-fth-2")])
    store.add_events(job.id, [JobEvent(later, "rerun of fth-1 (openai)", id="fth-rerun-of")])
    store.add_events(job.id, [JobEvent(later, "auto-cancel", id="fth-budget-fth-1234")])  # an auto-cancel
    assert store.last_event(job.id) == last
    # while a SageMaker job of a spec named "rerun-lr" sends ids that only look alike
    sagemaker = JobEvent(later, "Starting", id="fth-rerun-lr-0a1b:Starting:1764201600.000")
    store.add_events(job.id, [sagemaker])
    assert store.last_event(job.id) == sagemaker
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


def test_a_damaged_store_is_a_clear_error_naming_the_file(
    fth_home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from finetune_hub.cli import main

    path = fth_home / "jobs.db"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database\x00\xff" * 40)
    with pytest.raises(ConfigError, match="not an SQLite database") as caught:
        JobStore().list_jobs()
    assert str(path) in caught.value.message and "move it aside" in (caught.value.hint or "")
    monkeypatch.setenv("COLUMNS", "300")  # keep the path on one line
    assert main(["list"]) == 2
    assert str(path) in capsys.readouterr().err


@contextmanager
def write_lock_held(path: Path, seconds: float) -> Iterator[None]:
    """Another connection holds a write lock on a new (not yet WAL) store file for `seconds`: what a second
    process sees while the first creates the store."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE other_setup (x)")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        holder.join()


def test_opening_a_new_store_waits_while_another_process_sets_it_up(tmp_path: Path) -> None:
    # `PRAGMA journal_mode = WAL` fails at once under such a lock, busy timeout or not
    path = tmp_path / "jobs.db"
    with write_lock_held(path, 0.3):
        started = time.monotonic()
        assert JobStore(path).schema_version == len(MIGRATIONS)
    assert time.monotonic() - started >= 0.2  # it waited for the lock rather than failing or skipping WAL
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_waiting_for_the_lock_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = JobStore(path)
    store.LOCK_WAIT_S = 0.1
    with write_lock_held(path, 0.5), pytest.raises(ConfigError, match="stayed locked"):
        store.list_jobs()
    assert store.list_jobs() == []  # once the lock is gone the same store opens
