"""`fth` against the Vertex emulators, as a user runs it: real subprocesses, the shipped example spec, and
nothing injected. The adapter finds everything the standard way: Application Default Credentials
(GOOGLE_APPLICATION_CREDENTIALS, here a saved access token), the project from GOOGLE_CLOUD_PROJECT, the
tuning API from GOOGLE_VERTEX_BASE_URL (google-genai's own setting) and storage from STORAGE_EMULATOR_HOST.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import data
from tests.emulators.vertex_server import VertexStack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "vertex" / "sft.yaml"
PROJECT = "fth-cli-project"
TOKEN = "ya29.cli-saved-access-token-41c2"


@pytest.fixture
def stack() -> Iterator[VertexStack]:
    running = VertexStack(bucket="my-tuning-bucket").start()  # the bucket the example spec names
    yield running
    running.stop()


@pytest.fixture
def env(tmp_path: Path, stack: VertexStack) -> dict[str, str]:
    adc = tmp_path / "application_default_credentials.json"
    adc.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "fth-test.apps.googleusercontent.com",
                "client_secret": "unused",
                "refresh_token": "unused",
                "token": TOKEN,
                "expiry": "2999-01-01T00:00:00Z",  # still valid, so google-auth never refreshes it
            }
        )
    )
    drop = ("GOOGLE_CLOUD_LOCATION", "FTH_VERTEX_BUCKET", "GOOGLE_API_KEY", "GEMINI_API_KEY")
    return {
        **{k: v for k, v in os.environ.items() if k not in drop},
        "FTH_HOME": str(tmp_path / "home"),
        "GOOGLE_APPLICATION_CREDENTIALS": str(adc),
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "GOOGLE_VERTEX_BASE_URL": stack.vertex.url,
        "STORAGE_EMULATOR_HOST": stack.storage_url,
    }


def fth(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "finetune_hub", *args], capture_output=True, text=True, env=env, timeout=120, cwd=ROOT
    )


def fth_json(env: dict[str, str], *args: str, code: int = 0) -> Any:
    done = fth(env, *args, "--json")
    assert done.returncode == code, done.stderr
    return json.loads(done.stdout)


def test_submit_status_wait_and_cancel(env: dict[str, str], stack: VertexStack, tmp_path: Path) -> None:
    first = fth_json(env, "submit", "--provider", "vertex", str(EXAMPLE))
    assert first["status"] == "queued" and first["remote_id"].startswith(f"projects/{PROJECT}/locations/us-central1/")

    # the converted files were uploaded once, and exactly one job whose body is the spec was created
    converted = []
    for role in ("train", "validation"):
        out = tmp_path / f"{role}.vertex.jsonl"
        data.convert(EXAMPLE.parent / "data" / f"{role}.jsonl", to="vertex", out=out)
        converted.append(f"gs://my-tuning-bucket/finetune-hub/{data.content_hash(out)}.jsonl")
    assert stack.uploads() == 2
    assert stack.objects() == sorted(uri.removeprefix("gs://my-tuning-bucket/") for uri in converted)
    assert stack.vertex.tokens and set(stack.vertex.tokens) == {TOKEN}
    (body,) = stack.vertex.created
    labels = body.pop("labels")
    assert body == {
        "baseModel": "gemini-2.5-flash",
        "supervisedTuningSpec": {
            "trainingDatasetUri": converted[0],
            "validationDatasetUri": converted[1],
            "hyperParameters": {"epochCount": 3, "learningRateMultiplier": 1.0, "adapterSize": "ADAPTER_SIZE_FOUR"},
        },
        "tunedModelDisplayName": "tern-support-v1",
        "description": f"finetune-hub {first['id']} tern-support",
    }
    assert labels["team"] == "support" and labels["fth-job"] == first["id"] and labels["fth-key"].startswith("fth-")

    stack.vertex.advance(first["remote_id"], "running")
    assert fth_json(env, "status", first["id"])["status"] == "running"
    cancelled = fth_json(env, "cancel", first["id"])  # cancels, then reads the job back
    assert (
        cancelled["status"] == "cancelled" and stack.vertex.find(first["remote_id"])["state"] == "JOB_STATE_CANCELLED"
    )

    # the same spec again: a second job, and no second upload
    second = fth_json(env, "submit", "--provider", "vertex", str(EXAMPLE))
    assert second["id"] != first["id"] and len(stack.vertex.jobs) == 2 and stack.uploads() == 2
    stack.vertex.advance(second["remote_id"], "succeeded")
    (done,) = fth_json(env, "wait", second["id"])
    tuned = stack.vertex.find(second["remote_id"])["tunedModel"]
    assert done["status"] == "succeeded" and done["model"] == tuned["endpoint"]
    assert done["result"]["artifact"] == tuned["model"] and done["actual_usd"] > 0

    for path in (tmp_path / "home").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes()


def test_no_project_is_a_clear_error_before_any_upload(env: dict[str, str], stack: VertexStack) -> None:
    del env["GOOGLE_CLOUD_PROJECT"]
    done = fth(env, "submit", "--provider", "vertex", str(EXAMPLE))
    assert done.returncode == 2
    assert "no project set" in done.stderr and "GOOGLE_CLOUD_PROJECT" in done.stderr
    assert stack.uploads() == 0 and stack.vertex.requests == []


def test_cancel_of_a_job_that_finished_since_the_last_look_asks_nothing(
    env: dict[str, str], stack: VertexStack
) -> None:
    job = fth_json(env, "submit", "--provider", "vertex", str(EXAMPLE))
    stack.vertex.advance(job["remote_id"], "succeeded")  # the store still says queued
    done = fth(env, "cancel", job["id"])
    assert done.returncode == 0 and "already succeeded: nothing to cancel" in done.stdout, done.stderr
    assert fth_json(env, "list")[0]["status"] == "succeeded"
