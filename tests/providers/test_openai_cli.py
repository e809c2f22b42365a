"""`fth` end to end in a subprocess, pointed at the emulator with the standard environment variables:
submit, status, logs, wait and cancel on OpenAI and Azure OpenAI, with the example spec. The key never
shows up in any output or in the job store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulators.openai_server import OpenAIEmulator

SPEC = Path(__file__).resolve().parents[2] / "examples" / "openai" / "spec.yaml"
SECRET = "cli-secret-value-5f3a9c0e1d2b"


@pytest.fixture
def emulator() -> Iterator[OpenAIEmulator]:
    # Each request moves the emulated clock on, so the job progresses while `fth wait` polls.
    with OpenAIEmulator(api_key=SECRET, seconds_per_request=5) as emu:
        assert isinstance(emu, OpenAIEmulator)
        yield emu


class Fth:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.outputs: list[str] = []

    def __call__(self, *args: str, expect: int = 0) -> str:
        run = subprocess.run(
            [sys.executable, "-c", "from finetune_hub.cli import main; raise SystemExit(main())", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.outputs += [run.stdout, run.stderr]
        assert run.returncode == expect, f"fth {' '.join(args)} → {run.returncode}\n{run.stdout}\n{run.stderr}"
        return run.stdout

    def json(self, *args: str) -> dict[str, Any]:
        return json.loads(self(*args, "--json"))  # type: ignore[no-any-return]


def environment(tmp_path: Path, emulator: OpenAIEmulator, provider: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI_"))}
    env |= {"FTH_HOME": str(tmp_path / "home"), "FTH_TODAY": "2026-11-27", "COLUMNS": "200"}
    if provider == "openai":
        env |= {"OPENAI_BASE_URL": emulator.url + "/v1", "OPENAI_API_KEY": SECRET}
    else:
        env |= {"AZURE_OPENAI_ENDPOINT": emulator.url, "AZURE_OPENAI_API_KEY": SECRET}
    return env


@pytest.mark.parametrize("provider", ["openai", "azure_openai"])
def test_submit_status_logs_wait_cancel(tmp_path: Path, emulator: OpenAIEmulator, provider: str) -> None:
    fth = Fth(environment(tmp_path, emulator, provider))

    job = fth.json("submit", "--provider", provider, str(SPEC))
    assert job["provider"] == provider and job["remote_id"] in emulator.jobs
    assert job["estimated_usd"] is not None and job["estimated_usd"] < 5
    assert fth.json("status", job["id"])["status"] in ("queued", "running")

    waited = fth("wait", job["id"], "--interval", "0.01")
    assert f"{job['id']}: succeeded" in waited
    done = fth.json("status", job["id"])
    assert done["status"] == "succeeded" and done["model"] and done["result"]["metrics"]["valid_loss"] > 0
    assert done["actual_usd"] is not None
    logs = fth("logs", job["id"]).splitlines()
    assert "Created fine-tuning job" in logs[0] and "The job has successfully completed" in logs[-1]
    assert any("Step 48/48: training loss=" in line for line in logs)  # 16 examples × 3 epochs

    second = fth.json("submit", "--provider", provider, str(SPEC))
    assert second["remote_id"] != job["remote_id"] and len(emulator.jobs) == 2
    assert fth.json("cancel", second["id"])["status"] == "cancelled"
    assert emulator.jobs[second["remote_id"]].wire["status"] == "cancelled"
    assert emulator.upload_count == 2  # the second job reused both files

    sent = emulator.jobs[job["remote_id"]].wire
    assert sent["suffix"] == "terse-capitals" and sent["seed"] == 42
    if provider == "azure_openai":
        assert sent["trainingType"] == "GlobalStandard" and sent["model"] == "gpt-4.1-mini-2025-04-14"
    else:
        assert sent["metadata"]["project"] == "examples" and "trainingType" not in sent

    assert not [out for out in fth.outputs if SECRET in out]
    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_a_wrong_key_exits_3_without_showing_it(tmp_path: Path, emulator: OpenAIEmulator) -> None:
    env = environment(tmp_path, emulator, "openai")
    fth = Fth(env | {"OPENAI_API_KEY": "wrong-key-0123456789abcdef"})
    fth("submit", "--provider", "openai", str(SPEC), expect=3)
    assert "401" in fth.outputs[-1] and "wrong-key-0123456789abcdef" not in "".join(fth.outputs)
    assert emulator.jobs == {} and emulator.upload_count == 0


def test_status_of_every_job_shows_them_all_when_one_platform_cannot_be_reached(
    tmp_path: Path, emulator: OpenAIEmulator
) -> None:
    both = environment(tmp_path, emulator, "openai") | {"AZURE_OPENAI_ENDPOINT": emulator.url}
    both |= {"AZURE_OPENAI_API_KEY": SECRET}
    on_azure = Fth(both).json("submit", "--provider", "azure_openai", str(SPEC))
    fth = Fth(environment(tmp_path, emulator, "openai"))  # Azure's endpoint is not set in this shell
    on_openai = fth.json("submit", "--provider", "openai", str(SPEC))
    rows = json.loads(fth("status", "--json", expect=3))
    by_id = {r["id"]: r for r in rows}
    assert by_id[on_openai["id"]]["status"] in ("queued", "running")
    assert "AZURE_OPENAI_ENDPOINT" in by_id[on_azure["id"]]["refresh_error"]
    table = fth("status", expect=3)
    assert on_openai["id"] in table and on_azure["id"] in table


def test_wait_timeout_reports_every_job_and_exits_4(tmp_path: Path) -> None:
    with OpenAIEmulator(api_key=SECRET, seconds_per_request=0) as emulator:  # its clock stands still: no job ends
        fth = Fth(environment(tmp_path, emulator, "openai"))
        jobs = [fth.json("submit", "--provider", "openai", str(SPEC)) for _ in range(2)]
        args = ("wait", *(j["id"] for j in jobs), "--timeout", "1", "--interval", "0.2", "--json")
        shown = json.loads(fth(*args, expect=4))
    assert [s["id"] for s in shown] == [j["id"] for j in jobs] and {s["status"] for s in shown} == {"queued"}
    assert f"still going: {jobs[0]['id']}, {jobs[1]['id']}" in fth.outputs[-1]


def test_a_submit_that_waits_prints_the_one_job_record_as_one_that_does_not(tmp_path: Path) -> None:
    with OpenAIEmulator(api_key=SECRET, seconds_per_request=3600) as emulator:  # a job ends after a few polls
        fth = Fth(environment(tmp_path, emulator, "openai"))
        job = fth.json("submit", "--provider", "openai", str(SPEC), "--wait")
    assert job["status"] == "succeeded" and job["remote_id"] in emulator.jobs
    # the checks' warnings reach a real submit too, on stderr beside --json (the dry run is not the only one)
    assert "warning: " in fth.outputs[-1] and "job creation cutoff on 2027-01-06" in fth.outputs[-1]
