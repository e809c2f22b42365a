"""Serverless model customization (ServerlessJobConfig). moto crashes on these requests, so the SageMaker
calls go to botocore's Stubber, which checks each request against the service model and the exact
parameters below; the data still goes to S3 on the moto emulator."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.sagemaker import SageMakerJob
from providers.sagemaker_aws import AwsClients
from tests.conformance.bind_sagemaker import BUCKET, ROLE, TEST_CONFIG, aws_environment, settings
from tests.conftest import write_chat_jsonl
from tests.emulators.sagemaker_server import REGION, SageMakerEmulator

GROUP = "arn:aws:sagemaker:us-east-1:123456789012:model-package-group/support"
HUB = "arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model"
MODEL = "meta-textgeneration-llama-3-2-1b-instruct"


@pytest.fixture
def aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsClients]:
    server = SageMakerEmulator()
    server.start()
    aws_environment(monkeypatch, server.url, "fth-test-secret-0123456789abcdef", tmp_path)
    server.direct("s3").create_bucket(Bucket=BUCKET)
    real = AwsClients.create(REGION, config=TEST_CONFIG)
    stubbed = boto3.client("sagemaker", region_name=REGION, config=TEST_CONFIG)
    yield AwsClients(stubbed, real.s3, real.logs)
    server.stop()


def serverless_spec(tmp_path: Path, method: str = "sft", **extra: Any) -> FineTuneSpec:
    train = write_chat_jsonl(tmp_path / "train.jsonl", 12)
    valid = write_chat_jsonl(tmp_path / "valid.jsonl", 4, start=40)
    return FineTuneSpec.from_dict(
        {
            "name": "support",
            "base_model": MODEL,
            "method": method,
            "data": {"train": str(train), "validation": str(valid)},
            "providers": {"sagemaker": settings(mode="serverless", model_package_group_arn=GROUP, **extra)},
        }
    )


def submit_stubbed(job: SageMakerJob, store: JobStore, expected: dict[str, Any]) -> str:
    """Submit once: the look-up finds no job (ValidationException), then the create must match `expected`."""
    assert job.record is not None
    name = expected["TrainingJobName"]
    with Stubber(job.clients.sagemaker) as stub:
        stub.add_client_error(
            "describe_training_job", "ValidationException", "Requested resource not found.", 400,
            expected_params={"TrainingJobName": name},
        )  # fmt: skip
        stub.add_response("create_training_job", {"TrainingJobArn": f"arn:{name}"}, expected_params=expected)
        remote = job.submit(job.prepare(), job.record.idempotency_key)
        stub.assert_no_pending_responses()
    return remote


def new_job(spec: FineTuneSpec, store: JobStore, aws: AwsClients) -> SageMakerJob:
    record = store.create_job(provider="sagemaker", name=spec.name, spec={}, spec_hash="s", data_hash="d")
    return SageMakerJob(spec, client=aws, store=store, record=record)


def test_sft_with_lora_sends_the_serverless_request(tmp_path: Path, aws: AwsClients) -> None:
    store = JobStore(tmp_path / "jobs.db")
    job = new_job(serverless_spec(tmp_path, accept_eula=True), store, aws)
    assert job.record is not None
    key = job.record.idempotency_key
    name = f"fth-support-{key.removeprefix('fth-')[:16]}"
    files = job.prepare().files
    assert files["train"].startswith(f"s3://{BUCKET}/finetune-hub/data/") and "code" not in files
    expected = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "ServerlessJobConfig": {
            "BaseModelArn": f"{HUB}/{MODEL}",
            "JobType": "FineTuning",
            "CustomizationTechnique": "SFT",
            "AcceptEula": True,
            "Peft": "LORA",
        },
        "InputDataConfig": [
            {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": files[channel],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
            for channel in ("train", "validation")
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/finetune-hub/output"},
        "ModelPackageConfig": {"ModelPackageGroupArn": GROUP},
        "Tags": [
            {"Key": "fth:idempotency-key", "Value": key},
            {"Key": "fth:spec", "Value": "support"},
            {"Key": "fth:job-id", "Value": job.record.id},
        ],
    }
    assert submit_stubbed(job, store, expected) == name


def test_dpo_full_fine_tuning_with_recipe_values(tmp_path: Path, aws: AwsClients) -> None:
    store = JobStore(tmp_path / "jobs.db")
    spec = serverless_spec(
        tmp_path, "dpo", peft="FULL", hub_content_version="1.2.0", sequence_length="8K",
        hyperparameters={"learning_rate": 0.0001, "max_epochs": 2}, max_runtime_hours=3, tags={"team": "ml"},
    )  # fmt: skip
    job = new_job(spec, store, aws)
    assert job.record is not None
    name = f"fth-support-{job.record.idempotency_key.removeprefix('fth-')[:16]}"
    files = job.prepare().files
    expected = {
        "TrainingJobName": name,
        "RoleArn": ROLE,
        "ServerlessJobConfig": {
            "BaseModelArn": f"{HUB}/{MODEL}/1.2.0",
            "JobType": "FineTuning",
            "CustomizationTechnique": "DPO",
            "AcceptEula": False,
            "SequenceLength": "8K",
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": files["train"],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            },
            {
                "ChannelName": "validation",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": files["validation"],
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            },
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/finetune-hub/output"},
        "ModelPackageConfig": {"ModelPackageGroupArn": GROUP},
        "HyperParameters": {"learning_rate": "0.0001", "max_epochs": "2"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3 * 3600},
        "Tags": [
            {"Key": "team", "Value": "ml"},  # the user's first: fth's own, after, cannot be overridden
            {"Key": "fth:idempotency-key", "Value": job.record.idempotency_key},
            {"Key": "fth:spec", "Value": "support"},
            {"Key": "fth:job-id", "Value": job.record.id},
        ],
    }
    assert submit_stubbed(job, store, expected) == name


def test_status_progress_and_result_of_a_serverless_job(tmp_path: Path, aws: AwsClients, fth_home: Path) -> None:
    fth_home.mkdir(parents=True, exist_ok=True)
    (fth_home / "catalog.yaml").write_text(
        f"training:\n  - {{provider: sagemaker, model: 'serverless:{MODEL}', usd: 4.0, unit: 1M tokens,"
        " as_of: 2026-11-01, source: test, verified: false}\n"
    )
    store = JobStore(tmp_path / "jobs.db")
    job = new_job(serverless_spec(tmp_path), store, aws)
    assert job.record is not None
    store.update(job.record.id, remote_id="fth-support-abc")
    job.record = store.get(job.record.id)
    now = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)
    artifact = f"s3://{BUCKET}/finetune-hub/output/fth-support-abc/output/model.tar.gz"
    base = {
        "TrainingJobName": "fth-support-abc",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/fth-support-abc",
        "CreationTime": now,
        "StoppingCondition": {},
        "ModelArtifacts": {"S3ModelArtifacts": artifact},
    }
    progress = {"TotalStepCountPerEpoch": 10, "CurrentStep": 5, "CurrentEpoch": 2, "MaxEpoch": 2}
    running = {**base, "TrainingJobStatus": "InProgress", "SecondaryStatus": "Training", "ProgressInfo": progress}
    done = {
        **base,
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "BillableTokenCount": 250_000,
        "OutputModelPackageArn": f"{GROUP.replace('-group', '')}/1",
        "FinalMetricDataList": [{"MetricName": "train_loss", "Value": 0.8, "Timestamp": now}],
    }
    with Stubber(aws.sagemaker) as stub:
        stub.add_response("describe_training_job", running, {"TrainingJobName": "fth-support-abc"})
        stub.add_response("describe_training_job", done, {"TrainingJobName": "fth-support-abc"})
        state = job.refresh()
        assert state.status is JobStatus.RUNNING and state.progress == pytest.approx(0.75)
        result = job.result()
    assert result.model == f"{GROUP.replace('-group', '')}/1" and result.trained_tokens == 250_000
    assert result.metrics == {"train_loss": 0.8} and "Model Registry" in (result.deployment_hint or "")
    assert job.actual_cost(result) == pytest.approx(0.25 * 4.0)
    assert job.checkpoints() == []


def test_serverless_check_names_what_it_ignores(tmp_path: Path) -> None:
    spec = serverless_spec(tmp_path, instance_type="ml.p4d.24xlarge", region=REGION)
    spec = spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(update={"epochs": 3})})
    problems = SageMakerJob(spec).check()
    assert [p.severity for p in problems] == ["warning", "warning"]
    assert "not sent: epochs" in problems[0].message and "instance_type" in problems[1].message
    no_group = serverless_spec(tmp_path)
    no_group = no_group.model_copy(
        update={"providers": {"sagemaker": settings(mode="serverless", region=REGION)}},
    )
    errors = [p for p in SageMakerJob(no_group).check() if p.severity == "error"]
    assert len(errors) == 1 and "Model Registry" in errors[0].message
