"""The Azure OpenAI (Foundry) adapter: both wire styles, trainingType, suffix rules, the BOM, credentials and
the deployment hint, against the OpenAI emulator's Azure paths."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import api
from finetune_hub.errors import AuthError, ConfigError, ProviderError
from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.azure_openai import AzureOpenAIJob
from tests.conformance.bind_openai import AzureOpenAIBinding
from tests.conftest import write_chat_jsonl
from tests.emulators.openai_server import OpenAIEmulator


@pytest.fixture
def bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AzureOpenAIBinding]:
    binding = AzureOpenAIBinding()
    binding.start(tmp_path, monkeypatch)
    yield binding
    binding.stop()


@pytest.fixture
def emulator(bound: AzureOpenAIBinding) -> OpenAIEmulator:
    return bound.emulator


def make_spec(tmp_path: Path, suffix: str | None = "capitals", **settings: object) -> FineTuneSpec:
    train = write_chat_jsonl(tmp_path / "data" / "train.jsonl", 12)
    return FineTuneSpec.from_dict(
        {
            "name": "capitals",
            "base_model": {"azure_openai": "gpt-4.1-mini-2025-04-14"},
            "data": {"train": str(train)},
            "suffix": suffix,
            "providers": {"azure_openai": {"request_timeout": 1.0, **settings}},
        }
    )


def create_body(emulator: OpenAIEmulator) -> dict[str, Any]:
    return json.loads(  # type: ignore[no-any-return]
        next(r.body for r in emulator.requests if r.method == "POST" and r.path.endswith("/jobs"))
    )


@pytest.mark.parametrize("spelling", ["developerTier", "DEVELOPER", "Developer"])
def test_v1_api_with_training_type(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, spelling: str) -> None:
    job = api.submit(make_spec(tmp_path, training_type=spelling), "azure_openai", store=store)
    assert {r.path.split("/")[1:3] == ["openai", "v1"] for r in emulator.requests} == {True}
    assert create_body(emulator)["trainingType"] == "Developer"
    emulator.advance(job.remote_id, "succeeded")
    assert job.sync().status is JobStatus.SUCCEEDED
    result = job.result()
    assert result.model and result.model.startswith("gpt-4.1-mini-2025-04-14.ft-")
    assert result.deployment_hint and f"--model-name {result.model}" in result.deployment_hint
    assert "--sku-name developertier" in result.deployment_hint


def test_dated_api_version_style(
    tmp_path: Path,
    store: JobStore,
    emulator: OpenAIEmulator,
    bound: AzureOpenAIBinding,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")
    job = api.submit(make_spec(tmp_path), "azure_openai", store=store)
    assert "trainingType" not in create_body(emulator)
    for request in emulator.requests:
        assert request.path.startswith("/openai/") and not request.path.startswith("/openai/v1/")
        assert request.arg("api-version") == "2025-04-01-preview"
        assert {k.lower(): v for k, v in request.headers.items()}["api-key"] == bound.secret
    assert job.refresh().status is JobStatus.QUEUED
    assert job.account_id() == emulator.url + "/openai"


def test_uploaded_files_carry_the_bom_azure_asks_for(tmp_path: Path, store: JobStore, emulator: OpenAIEmulator) -> None:
    spec = make_spec(tmp_path)
    prepared = api.make_job("azure_openai", spec, store=store).prepare()
    uploaded = emulator.contents[prepared.files["train"]]
    assert uploaded.startswith(b"\xef\xbb\xbf")
    assert uploaded.decode("utf-8-sig").splitlines() == spec.data.train.read_text().splitlines()


def test_jobs_wait_until_azure_has_processed_the_files(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.processing_s = 30
    emulator.seconds_per_request = 10  # each poll moves the emulated clock on
    monkeypatch.setattr(AzureOpenAIJob, "processing_poll_s", 0.0)
    job = api.submit(make_spec(tmp_path), "azure_openai", store=store)
    polls = [r for r in emulator.requests if r.method == "GET" and "/files/" in r.path]
    assert len(polls) >= 3 and job.remote_id in emulator.jobs  # created only once the files were processed


def test_a_file_azure_failed_to_import_is_uploaded_again_next_time(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator
) -> None:
    emulator.failing_imports = 1
    spec = make_spec(tmp_path)
    with pytest.raises(ProviderError, match="could not import"):
        api.submit(spec, "azure_openai", store=store)
    uploads = len(emulator.files)
    job = api.submit(spec, "azure_openai", store=store)  # not the broken file again
    assert job.remote_id in emulator.jobs and len(emulator.files) == uploads + 1


@pytest.mark.parametrize("suffix", ["capitals.v2", "a-suffix-of-19-chars"])
def test_azure_suffix_rules(tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://example.openai.azure.com")
    errors = api.plan(make_spec(tmp_path, suffix), "azure_openai").errors  # the dry run's, said once
    assert len(errors) == 1 and "18 characters" in errors[0].message and errors[0].hint


def test_unknown_training_type_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training_type"):
        api.make_job("azure_openai", make_spec(tmp_path, training_type="Premium"))


def test_entra_id_token_instead_of_a_key(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "entra-token-abcdef0123456789"
    emulator.api_key = token
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    monkeypatch.setenv("AZURE_OPENAI_AD_TOKEN", token)
    job = api.submit(make_spec(tmp_path), "azure_openai", store=store)
    assert job.refresh().status is JobStatus.QUEUED
    headers = {k.lower(): v for k, v in emulator.requests[-1].headers.items()}
    assert headers["authorization"] == f"Bearer {token}"


def test_missing_endpoint_or_credentials(
    tmp_path: Path, bound: AzureOpenAIBinding, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(tmp_path)
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT")
    with pytest.raises(ConfigError, match="AZURE_OPENAI_ENDPOINT"):
        api.make_job("azure_openai", spec).account_id()
    planned = api.plan(spec, "azure_openai")  # a dry run says so too, as it does for Vertex's and AWS's settings
    assert [p.message for p in planned.errors if "AZURE_OPENAI_ENDPOINT is not set" in p.message]
    if importlib.util.find_spec("azure") and importlib.util.find_spec("azure.identity"):
        return  # with azure-identity installed, Entra ID is tried instead
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", bound.emulator.url)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY")
    with pytest.raises(AuthError) as missing:
        api.make_job("azure_openai", spec).account_id()
    assert "azure-identity" in (missing.value.hint or "")


def test_a_file_azure_never_finishes_importing_stops_the_submit(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator.processing_s = 10**6
    monkeypatch.setattr(AzureOpenAIJob, "processing_timeout_s", 0.0)
    with pytest.raises(ProviderError, match="still importing"):
        api.submit(make_spec(tmp_path), "azure_openai", store=store)
    assert not emulator.jobs


def test_the_v1_base_url_from_azures_samples_works_as_the_endpoint(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", os.environ["AZURE_OPENAI_ENDPOINT"].rstrip("/") + "/openai/v1/")
    job = api.submit(make_spec(tmp_path), "azure_openai", store=store)
    assert job.sync().status is JobStatus.QUEUED
    assert {r.path.split("/")[1:3] == ["openai", "v1"] for r in emulator.requests} == {True}


@pytest.mark.parametrize("api_version", [None, "2025-04-01-preview"])
def test_compare_asks_azure_models_through_the_deployment_the_user_names(
    tmp_path: Path, store: JobStore, emulator: OpenAIEmulator, monkeypatch: pytest.MonkeyPatch, api_version: str | None
) -> None:
    from finetune_hub.compare import compare
    from tests.conftest import chat_example

    if api_version:
        monkeypatch.setenv("OPENAI_API_VERSION", api_version)
    job = api.submit(make_spec(tmp_path), "azure_openai", store=store)
    emulator.advance(job.remote_id, "succeeded")
    job.sync()
    held = tmp_path / "held.jsonl"
    held.write_text("".join(json.dumps(chat_example(i)) + "\n" for i in (0, 5)))
    assert job.record is not None and job.record.model
    emulator.deployments["capitals-prod"] = job.record.model
    # without a deployment, nothing is asked (every prompt would be a 404), and the user is told what to do
    alone = compare([job.record.id], store=store, eval_file=held, include_base=True).evaluations
    assert [e.answered for e in alone] == [0, 0] and "--model" in (alone[0].error or "")
    assert not [r for r in emulator.requests if r.path.endswith("/chat/completions")]
    named = compare([job.record.id], store=store, eval_file=held, models={job.record.id[:6]: "capitals-prod"})
    assert named.evaluations[0].answered == 2 and named.evaluations[0].scores["exact"] == 1.0
    other = api.submit(make_spec(tmp_path, suffix="other"), "azure_openai", store=store)
    with pytest.raises(ConfigError, match="not compared here"):  # a typo in the job part says so
        compare([job.record.id], store=store, eval_file=held, models={other.local_id or "": "capitals-prod"})
