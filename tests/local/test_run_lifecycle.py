"""The local runs' bookkeeping under trouble: stops still pending, lost folders and files, torn writes.

The trainer's place is taken by a stand-in interpreter (`providers.local.python`): a script that notes its
arguments and sleeps, so each case runs in a fraction of a second and no model is trained.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import api
from finetune_hub.errors import ConfigError, InvalidRequest, NotFound, ProviderError
from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from local_backend import runfiles
from providers.local import LocalJob
from tests.local.test_provider import ROOT, spec_dict


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[Path]:
    """An 'interpreter' that writes its arguments to <script>.args and sleeps; every one started is killed after."""
    script = tmp_path / "stand-in"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{script}.args"\necho $$ >> "{script}.pids"\nexec sleep 60\n')
    script.chmod(0o755)
    yield script
    pids = script.with_suffix(".pids")
    for pid in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)


def submit(model: Path, data: tuple[Path, Path], store: JobStore, **local: Any) -> Any:
    spec = FineTuneSpec.model_validate(spec_dict(model, data, **local))
    return api.submit(spec, "local", store=store)


def kill(job: Any) -> None:
    """SIGKILL the run's process and reap it (it is this test's child), as the OOM killer would end it."""
    pid = job.client.state(job.remote_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def started(script: Path, count: int) -> list[str]:
    """The argument lines of the processes started, once `count` have written theirs (each does so at once)."""
    args = script.with_suffix(".args")
    for _ in range(500):
        if args.exists() and len(lines := args.read_text().splitlines()) >= count:
            return lines
        time.sleep(0.01)
    raise AssertionError(f"fewer than {count} processes started")


def test_resume_while_a_stop_is_pending_refuses_and_starts_no_second_trainer(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    pid = job.client.state(job.remote_id)["pid"]
    for stop in (job.pause, job.cancel):
        stop()
        with pytest.raises(InvalidRequest, match="has not stopped yet"):
            job.resume()
    run = job.client._run(job.remote_id)
    assert run.request() == "cancel" and job.client.state(job.remote_id)["pid"] == pid  # the request stands
    time.sleep(0.2)  # time enough for a second one to write its line
    assert len(started(stand_in, 1)) == 1


def test_the_first_start_keeps_the_configs_resume_and_resume_continues(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(
        llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in), trainer={"resume": "must"}
    )
    kill(job)
    assert job.sync().status is JobStatus.FAILED  # the process is gone without a final status
    job.resume()
    first, second = started(stand_in, 2)
    assert "--resume" not in first and second.endswith("--resume auto")


def test_resumes_at_once_start_one_trainer(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    kill(job)
    together, errors = threading.Barrier(4), []

    def resume() -> None:
        together.wait()
        try:
            job.resume()
        except Exception as exc:  # e.g. "has not stopped yet" about the trainer another resume just started
            errors.append(exc)

    threads = [threading.Thread(target=resume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.2)  # time enough for any further one to write its line
    assert len(started(stand_in, 2)) == 2 and not errors  # the first start and one resume
    assert job.client.process_alive(job.remote_id)  # and the status names the one that runs


def test_a_deleted_data_snapshot_is_stored_again(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path, fth_home: Path
) -> None:
    store = JobStore(tmp_path / "jobs.db")
    submit(llama_model, chat_data, store, python=str(stand_in))
    shutil.rmtree(fth_home / "local" / "data")
    second = submit(llama_model, chat_data, store, python=str(stand_in), save_steps=5)  # another job, same data
    config = runfiles.read_json(second.client._run(second.remote_id).config) or {}
    assert Path(config["train_file"]).is_file() and Path(config["validation_file"]).is_file()


def test_a_relative_runs_dir_is_refused_at_submit(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = FineTuneSpec.model_validate(spec_dict(llama_model, chat_data, runs_dir="myruns"))
    LocalJob(spec)  # a job stored with one (an earlier version took it) still opens
    with pytest.raises(ConfigError, match="is relative: give an absolute path"):
        api.submit(spec, "local", store=JobStore(tmp_path / "jobs.db"))


def test_a_failure_while_creating_a_run_leaves_nothing_the_retry_trips_on(
    llama_model: Path,
    chat_data: tuple[Path, Path],
    tmp_path: Path,
    stand_in: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write, failures = runfiles.write_json, []

    def disk_full_once(path: Path, data: dict[str, Any]) -> None:
        if path.name == "config.json" and not failures:
            failures.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        write(path, data)

    monkeypatch.setattr(runfiles, "write_json", disk_full_once)
    monkeypatch.setattr(LocalJob, "retry_sleep", staticmethod(lambda seconds: None))
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    assert failures  # the first try failed, the retry made the run whole
    assert job.client._run(job.remote_id).config.exists() and job.refresh().status is JobStatus.QUEUED
    assert [p.name for p in (job.client.root / "runs").iterdir()] == [job.remote_id]  # no draft left behind


def test_a_damaged_status_file_is_a_clear_error_at_once(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    trainer = runfiles.RunFiles(job.client._run(job.remote_id).root)  # as the trainer holds it
    trainer.update_status(state="running", step=3)
    trainer.status.write_text('{"state": "runn')  # cut short (a crash of the machine, a stray edit)
    with pytest.raises(ProviderError, match=r"status\.json is damaged") as caught:
        job.sync()  # no retries: a file replaced whole does not mend itself
    assert not caught.value.retryable
    trainer.update_status(step=4)  # the trainer's next log line rewrites it from what it last wrote
    status = trainer.read_status() or {}
    assert (status["state"], status["step"], status["gpus"]) == ("running", 4, 1) and status["pid"]
    assert job.refresh().status is JobStatus.RUNNING


def test_a_job_whose_run_folder_was_deleted_can_be_cancelled(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    kill(job)
    shutil.rmtree(job.client.root / "runs" / job.remote_id)
    with pytest.raises(NotFound):  # what the platform says of a job it does not know (the conformance suite's rule)
        job.sync()
    assert api.control(job, "cancel").status is JobStatus.CANCELLED  # not stuck as running for good
    cleared = job.store.get(job.local_id)
    assert cleared.status is JobStatus.CANCELLED and "is gone" in (cleared.error or "")
    shutil.rmtree(job.client.root / "runs")  # the whole runs folder missing (an unmounted drive?): not cleared
    with pytest.raises(NotFound):
        job.cancel()


@pytest.mark.skipif(runfiles.process_stamp(os.getpid()) is None, reason="needs /proc (Linux)")
def test_a_pid_taken_over_by_another_process_is_not_the_trainer(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    run = job.client._run(job.remote_id)
    assert job.refresh().status is JobStatus.QUEUED  # its own process, stamp and all
    run.update_status(pid_stamp="another-boot:12345")  # as after a reboot: the pid lives, someone else's
    state = job.refresh()
    assert state.status is JobStatus.FAILED and "without a final status" in (state.error or "")
    job.resume()  # not refused as "still running"
    assert len(started(stand_in, 2)) == 2


def test_wait_returns_on_a_paused_job_with_exit_4(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path, fth_home: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(fth_home / "jobs.db"), python=str(stand_in))
    kill(job)
    assert job.pause().status is JobStatus.PAUSED  # no process: paused at once
    env = {**os.environ, "FTH_HOME": str(fth_home), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-c", "from finetune_hub.cli import main; raise SystemExit(main())", "wait", job.local_id]
    waited = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert waited.returncode == 4, waited.stdout + waited.stderr
    assert f"{job.local_id}: paused" in waited.stdout and "fth resume" in waited.stderr


def test_a_line_torn_by_a_killed_writer_does_not_swallow_the_next_event(tmp_path: Path) -> None:
    run = runfiles.RunFiles(tmp_path)
    run.add_event("before the kill")
    with open(run.events, "a", encoding="utf-8") as fh:
        fh.write('{"time": "2026-11-27T10:00:00+00:00", "kind": "me')  # the process died mid-line
    runfiles.RunFiles(tmp_path).add_event("after the resume")  # a new process
    assert [e["message"] for e in run.read_events()] == ["before the kill", "after the resume"]


def test_cancel_or_pause_of_a_finished_job_asks_nothing_and_says_so(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path, fth_home: Path
) -> None:
    store = JobStore(fth_home / "jobs.db")
    job = submit(llama_model, chat_data, store, python=str(stand_in))
    kill(job)
    assert job.sync().status is JobStatus.FAILED
    env = {**os.environ, "FTH_HOME": str(fth_home), "PYTHONPATH": str(ROOT)}

    def fth(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-c", "from finetune_hub.cli import main; raise SystemExit(main())", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)

    for verb in ("cancel", "pause"):
        done = fth(verb, job.local_id)
        assert done.returncode == 0 and f"already failed: nothing to {verb}" in done.stdout, done.stdout + done.stderr
    assert job.client.state(job.remote_id)["state"] == "died"  # the run was not marked cancelled or paused
    run = job.client._run(job.remote_id)  # as a run that finished leaves it
    run.update_status(state="succeeded")
    runfiles.write_json(run.summary, {"status": "succeeded", "adapter": str(run.adapter)})
    assert job.sync().status is JobStatus.SUCCEEDED
    refused = fth("resume", job.local_id)
    assert refused.returncode == 2 and "already succeeded" in refused.stderr, refused.stdout + refused.stderr
    assert len(started(stand_in, 1)) == 1


def test_events_written_after_the_clock_stepped_back_still_reach_the_store(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path
) -> None:
    job = submit(llama_model, chat_data, JobStore(tmp_path / "jobs.db"), python=str(stand_in))
    run = job.client._run(job.remote_id)
    run.events.write_text("")
    first = runfiles.RunFiles(run.root)
    first.add_event("step 1")
    job.sync()
    with open(run.events, "a", encoding="utf-8") as fh:  # a resumed process whose clock is 5 s behind
        line = {
            "time": "2000-01-01T00:00:00+00:00",
            "kind": "message",
            "level": "info",
            "message": "step 2",
            "data": {},
        }
        fh.write(json.dumps(line) + "\n")
    job.sync()
    assert {"step 1", "step 2"} <= {e.message for _, e in job.store.events(job.local_id)}


def test_fth_list_shows_where_local_jobs_are_now_without_importing_the_training_stack(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune_hub.cli import main
    from tests.core.test_cli import HEAVY, imported_modules

    job = submit(llama_model, chat_data, JobStore(), python=str(stand_in))
    kill(job)  # the trainer is gone; nothing has asked since
    assert main(["list", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["status"] == "failed"  # read from the run's files, not the stale "queued"
    job.resume()
    job.sync()  # unfinished again: the next list refreshes it, and imports no SDK, torch or transformers
    modules = imported_modules("list")
    heavy = {m for m in modules for h in HEAVY if h != "pydantic" and (m == h or m.startswith(h + "."))}  # as list
    assert "providers.local_runs" in modules and not heavy


def test_a_second_submit_of_a_running_job_says_so(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path, stand_in: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from finetune_hub.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(llama_model, chat_data, python=str(stand_in))))
    assert main(["submit", "-p", "local", str(spec)]) == 0
    (first,) = JobStore().list_jobs()
    assert "already on local" not in capsys.readouterr().err
    assert main(["submit", "-p", "local", str(spec)]) == 0  # a warning, not a refusal: it may be meant
    assert f"the same spec and data are already on local: {first.id} (queued)" in " ".join(
        capsys.readouterr().err.split()
    )
    assert len(JobStore().list_jobs()) == 2
