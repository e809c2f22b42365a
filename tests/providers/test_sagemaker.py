"""The SageMaker adapter through boto3 against moto (behind the SageMaker lifecycle layer) on 127.0.0.1."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import api
from finetune_hub.cli import main
from finetune_hub.data import stats
from finetune_hub.errors import AuthError, ConfigError
from finetune_hub.records import JobStatus
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.sagemaker import SageMakerJob
from providers.sagemaker_aws import AwsClients
from tests.conformance.bind_sagemaker import BUCKET, TEST_CONFIG, aws_environment, settings
from tests.conftest import write_chat_jsonl
from tests.emulators.sagemaker_server import REGION, SageMakerEmulator

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "sagemaker"
EXAMPLE_BUCKET = "my-finetune-bucket"


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SageMakerEmulator]:
    server = SageMakerEmulator()
    server.start()
    aws_environment(monkeypatch, server.url, "fth-test-secret-0123456789abcdef", tmp_path)
    for bucket in (BUCKET, EXAMPLE_BUCKET):
        server.direct("s3").create_bucket(Bucket=bucket)
    yield server
    server.stop()


def make_spec(tmp_path: Path, validation: bool = True, **provider: Any) -> FineTuneSpec:
    train = write_chat_jsonl(tmp_path / "data" / "train.jsonl", 12)
    valid = write_chat_jsonl(tmp_path / "data" / "valid.jsonl", 4, start=50) if validation else None
    return FineTuneSpec.from_dict(
        {
            "name": "capitals",
            "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
            "data": {"train": str(train), "validation": str(valid) if valid else None},
            "hyperparameters": {"epochs": 2, "learning_rate": 1e-4, "batch_size": 4},
            "lora": {"rank": 8, "alpha": 16},
            "providers": {"sagemaker": settings(**provider)},
        }
    )


@pytest.fixture
def aws(emulator: SageMakerEmulator) -> AwsClients:
    """Clients for the emulator, built once per test (building boto3 clients takes a moment)."""
    return AwsClients.create(REGION, config=TEST_CONFIG)


def s3_text(emulator: SageMakerEmulator, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(emulator.direct("s3").get_object(Bucket=bucket, Key=key)["Body"].read())


def decoded(hyperparameters: dict[str, str]) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in hyperparameters.items()}


# -- the CLI, end to end ---------------------------------------------------------------------------------


def test_cli_submit_creates_one_job_matching_the_example_spec(
    emulator: SageMakerEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec_path = tmp_path / "trainer.yaml"
    for name in ("trainer.yaml", "train.jsonl", "valid.jsonl"):
        shutil.copy(EXAMPLES / name, tmp_path / name)
    assert main(["submit", "--provider", "sagemaker", str(spec_path), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    spec = FineTuneSpec.load(spec_path)

    assert emulator.remote_jobs() == [record["remote_id"]]
    [sent] = emulator.created()
    assert sent["RoleArn"] == "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
    assert sent["ResourceConfig"] == {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 100}
    assert sent["EnableManagedSpotTraining"] is True
    assert sent["StoppingCondition"] == {"MaxRuntimeInSeconds": 2 * 3600, "MaxWaitTimeInSeconds": 4 * 3600}
    prefix = f"s3://{EXAMPLE_BUCKET}/finetune-hub"
    assert sent["CheckpointConfig"]["S3Uri"] == f"{prefix}/checkpoints/{record['remote_id']}"
    assert sent["OutputDataConfig"] == {"S3OutputPath": f"{prefix}/output"}
    assert sent["AlgorithmSpecification"]["TrainingImage"].startswith("763104351884.dkr.ecr.us-east-1.amazonaws.com/")

    hp = decoded(sent["HyperParameters"])
    assert hp["model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert (hp["epochs"], hp["learning_rate"], hp["batch_size"], hp["max_seq_length"]) == (3, 0.0002, 8, 1024)
    assert (hp["lora_rank"], hp["lora_alpha"], hp["lora_dropout"], hp["seed"]) == (16, 32, 0.05, 42)
    assert hp["sagemaker_program"] == "local_backend/sagemaker_entry.py"

    tags = {t["Key"]: t["Value"] for t in sent["Tags"]}
    stored = JobStore().get(record["id"])
    assert tags["fth:job-id"] == stored.id and tags["fth:idempotency-key"] == stored.idempotency_key
    assert tags["team"] == "support"
    assert sent["Environment"]["FTH_JOB_ID"] == stored.id

    # the channels hold the data exactly as the local trainer reads it (OpenAI chat JSONL)
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent["InputDataConfig"]}
    assert set(channels) == {"training", "validation"}
    for role, source in (("training", spec.data.train), ("validation", spec.data.validation)):
        assert channels[role].endswith("/")
        body = s3_text(emulator, channels[role] + "data.jsonl").decode()
        assert [json.loads(line) for line in body.splitlines()] == [
            json.loads(line) for line in Path(str(source)).read_text().splitlines()
        ]
    with tarfile.open(fileobj=io.BytesIO(s3_text(emulator, hp["sagemaker_submit_directory"]))) as tar:
        names = tar.getnames()
    assert "local_backend/sagemaker_entry.py" in names and "local_backend/config.py" in names
    assert "requirements.txt" in names

    # status, logs and cancel through the CLI
    assert main(["status", record["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "queued"
    emulator.advance(record["remote_id"], "running")
    assert main(["status", record["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "running"
    assert main(["logs", record["id"]]) == 0
    assert "Invoking script" in capsys.readouterr().out
    assert main(["cancel", record["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelling"
    emulator.clock.advance(60)
    assert main(["status", record["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "cancelled"
    assert emulator.remote_jobs() == [record["remote_id"]]


@pytest.mark.parametrize("missing", ["role_arn", "bucket", "region"])
def test_missing_role_bucket_or_region_fails_before_any_upload(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    spec = make_spec(tmp_path, region=REGION)
    block = {k: v for k, v in spec.settings_for("sagemaker").items() if k != missing}
    spec = spec.model_copy(update={"providers": {"sagemaker": block}})
    with pytest.raises(ConfigError) as raised:
        api.submit(spec, "sagemaker", store=store)
    assert missing.replace("_arn", "") in str(raised.value).lower()
    assert "nothing was uploaded" in str(raised.value)
    assert emulator.requests == [] and store.list_jobs() == []


def test_check_catches_what_the_trainer_would_reject(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, hyperparameters={"lora_rnak": 4}, spot=True, max_runtime_hours=10, max_wait_hours=5)
    messages = "\n".join(p.message for p in SageMakerJob(spec).check() if p.severity == "error")
    assert "lora_rnak (did you mean lora_rank?)" in messages
    assert "max_wait_hours must be at least max_runtime_hours" in messages
    dpo = spec.model_copy(update={"method": "dpo", "providers": {"sagemaker": settings()}})
    assert any("needs mode: serverless" in p.message for p in SageMakerJob(dpo).check())


def test_the_trainer_gets_the_same_values_as_the_local_adapter(tmp_path: Path) -> None:
    """One mapping for both adapters that run the project's trainer: a multiplier from an OpenAI or Vertex spec
    scales the trainer's default learning rate, with a warning where an absolute rate overrides it."""
    from providers.local import LocalJob
    from providers.sagemaker_request import job_trainer_values

    raw = make_spec(tmp_path).model_dump(mode="json", exclude_none=True)
    raw["hyperparameters"] = {"learning_rate_multiplier": 0.5}
    spec = FineTuneSpec.from_dict(raw)
    values = job_trainer_values(spec, SageMakerJob(spec).settings)
    local = LocalJob(spec).train_config({"train": "t.jsonl"}, "out")
    assert values["learning_rate"] == local.learning_rate == 1e-4
    assert (values["epochs"], values["lora_rank"]) == (local.epochs, local.lora_rank) == (3, 8)
    raw["hyperparameters"] = {"learning_rate_multiplier": 0.5, "learning_rate": 3e-4}
    both = FineTuneSpec.from_dict(raw)
    assert job_trainer_values(both, SageMakerJob(both).settings)["learning_rate"] == 3e-4
    assert any("using learning_rate" in p.message for p in SageMakerJob(both).check() if p.severity == "warning")


def test_credentials_in_the_environment_block_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"environment\.HF_TOKEN looks like a credential"):
        SageMakerJob(make_spec(tmp_path, environment={"HF_TOKEN": "hf_abc"}))


# -- lifecycle details -----------------------------------------------------------------------------------


def submitted(spec: FineTuneSpec, store: JobStore, aws: AwsClients) -> SageMakerJob:
    job = api.submit(spec, "sagemaker", store=store, client=aws)
    assert isinstance(job, SageMakerJob)
    return job


def test_retry_with_the_same_key_finds_the_job_it_created(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path), store, aws)
    assert job.record is not None
    again = SageMakerJob(job.spec, client=aws, store=store)
    assert again.submit(again.prepare(), job.record.idempotency_key) == job.remote_id
    # a job created by another process between our look-up and our create: the create is refused
    # (ResourceInUse) and the job found under its name is ours
    emulator.faults.plan("404", on="SageMaker.DescribeTrainingJob")
    assert again.submit(again.prepare(), job.record.idempotency_key) == job.remote_id
    assert len(emulator.remote_jobs()) == 1 and len(emulator.created()) == 1


def test_prepare_skips_objects_already_in_the_bucket(
    emulator: SageMakerEmulator, tmp_path: Path, aws: AwsClients
) -> None:
    spec = make_spec(tmp_path)
    first = SageMakerJob(spec, client=aws).prepare()  # no store: S3 itself is asked (HeadObject)
    puts = emulator.uploads()
    assert puts == 3  # train, validation, trainer source
    assert SageMakerJob(spec, client=aws).prepare().files == first.files
    assert emulator.uploads() == puts


def test_an_object_deleted_from_the_bucket_is_uploaded_again(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    spec = make_spec(tmp_path)
    first = SageMakerJob(spec, client=aws, store=store).prepare()
    bucket, folder = first.files["train"].removeprefix("s3://").split("/", 1)
    emulator.direct("s3").delete_object(Bucket=bucket, Key=f"{folder}data.jsonl")  # a lifecycle rule, a cleanup
    puts = emulator.uploads()
    assert SageMakerJob(spec, client=aws, store=store).prepare().files == first.files
    assert emulator.uploads() == puts + 1  # the store's memory was checked, not trusted


def test_a_boto3_session_can_be_injected(emulator: SageMakerEmulator, tmp_path: Path) -> None:
    import boto3

    job = SageMakerJob(make_spec(tmp_path), client=boto3.Session(region_name="eu-west-1"))
    assert job.clients.region == "eu-west-1" and job.clients is job.clients
    assert set(job.prepare().files) == {"train", "validation", "code"}


def test_success_reports_metrics_billable_time_and_spot_savings(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path, spot=True, instance_type="ml.g5.12xlarge", instance_count=2), store, aws)
    emulator.advance(job.remote_id, "succeeded")
    assert job.sync().status is JobStatus.SUCCEEDED
    result = job.result()
    assert result.artifact and result.artifact.endswith(f"/{job.remote_id}/output/model.tar.gz")
    assert result.metrics == {"train:loss": 0.42, "validation:loss": 0.51}
    assert result.extra["spot_savings_pct"] == pytest.approx(70.0, abs=1.0)
    assert result.billable_seconds is not None
    assert job.record is not None and job.record.actual_usd == pytest.approx(result.billable_seconds / 3600 * 2 * 7.09)
    statuses = [s for s, _, _ in store.history(job.record.id)]
    assert statuses[-1] is JobStatus.SUCCEEDED


@pytest.mark.parametrize(("to", "expected"), [("failed", JobStatus.FAILED), ("stopped", JobStatus.CANCELLED)])
def test_a_failed_or_stopped_job_still_records_the_time_it_was_billed_for(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients, to: str, expected: JobStatus
) -> None:
    job = submitted(make_spec(tmp_path, instance_type="ml.g5.12xlarge", instance_count=2), store, aws)
    emulator.advance(job.remote_id, "running")
    emulator.advance(job.remote_id, to)
    assert job.sync().status is expected
    billed = emulator.direct("sagemaker").describe_training_job(TrainingJobName=job.remote_id)
    seconds = emulator.jobs[job.remote_id].overlay(billed)["BillableTimeInSeconds"]
    assert job.record is not None and job.record.actual_usd == pytest.approx(seconds / 3600 * 2 * 7.09)


def test_events_are_the_secondary_status_transitions(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path), store, aws)
    emulator.advance(job.remote_id, "failed", reason="AlgorithmError: bad data")
    events = job.events()
    assert [e.data["status"] for e in events] == ["Starting", "Downloading", "Training", "Failed"]
    assert events[-1].level == "error" and "bad data" in events[-1].message
    assert job.events(since=events[1].time) == events[2:]
    state = job.refresh()
    assert state.status is JobStatus.FAILED and state.error == "AlgorithmError: bad data"


def test_spot_interruption_is_queued_and_runtime_limit_is_a_failure(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path, spot=True), store, aws)
    emulator.advance(job.remote_id, "running")
    emulator.advance(job.remote_id, "interrupted")
    assert job.refresh().status is JobStatus.QUEUED
    assert SageMakerJob.map_status("Stopped/MaxRuntimeExceeded") is JobStatus.FAILED
    assert SageMakerJob.map_status("InProgress/Training") is JobStatus.RUNNING
    assert SageMakerJob.map_status("Stopped") is JobStatus.CANCELLED


@pytest.mark.parametrize(("cancels", "expected"), [(0, JobStatus.SUCCEEDED), (1, JobStatus.CANCELLING)])
def test_cancel_of_a_finished_or_stopping_job_changes_nothing(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients, cancels: int, expected: JobStatus
) -> None:
    job = submitted(make_spec(tmp_path), store, aws)
    emulator.advance(job.remote_id, "succeeded" if expected is JobStatus.SUCCEEDED else "running")
    for _ in range(cancels):
        job.cancel()
    assert job.cancel().status is expected  # a second `fth cancel` while it stops: StopTrainingJob would refuse


def test_logs_follow_every_instance_until_the_job_ends(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path, instance_count=2), store, aws)
    job.log_poll_seconds = 0.02
    emulator.advance(job.remote_id, "running")

    def finish() -> None:
        time.sleep(0.3)
        emulator.advance(job.remote_id, "succeeded")

    threading.Thread(target=finish).start()
    lines = list(job.logs(follow=True))
    assert lines.count("[algo-1] training finished") == 1 and lines.count("[algo-2] training finished") == 1
    assert lines[0].startswith("[algo-1] Invoking script")


def test_logs_before_anything_was_logged_show_the_transitions(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path), store, aws)
    assert any("Starting: Launching" in line for line in job.logs())


def test_checkpoints_are_the_complete_folders_synced_to_s3(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path, spot=True), store, aws)
    s3 = emulator.direct("s3")
    base = f"finetune-hub/checkpoints/{job.remote_id}/checkpoints"
    for key in ("step-000020/meta.json", "step-000010/adapter_model.safetensors", "step-000010/meta.json"):
        s3.put_object(Bucket=BUCKET, Key=f"{base}/{key}", Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=f"{base}/step-000030/adapter_model.safetensors", Body=b"partial")
    found = job.checkpoints()
    assert [(c.id, c.step) for c in found] == [("step-000010", 10), ("step-000020", 20)]
    assert found[0].location == f"s3://{BUCKET}/{base}/step-000010/"


def test_an_empty_prefix_puts_everything_at_the_bucket_root(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path, prefix="", spot=True), store, aws)
    [sent] = emulator.created()
    uris = [sent["CheckpointConfig"]["S3Uri"], sent["OutputDataConfig"]["S3OutputPath"]]
    uris += [c["DataSource"]["S3DataSource"]["S3Uri"] for c in sent["InputDataConfig"]]
    assert all(u.startswith(f"s3://{BUCKET}/") and "//" not in u.removeprefix("s3://") for u in uris), uris
    emulator.direct("s3").put_object(Bucket=BUCKET, Key=f"checkpoints/{job.remote_id}/checkpoints/s-1/meta.json")
    assert [c.location for c in job.checkpoints()] == [f"s3://{BUCKET}/checkpoints/{job.remote_id}/checkpoints/s-1/"]


def test_missing_credentials_are_an_auth_error(
    emulator: SageMakerEmulator,
    tmp_path: Path,
    store: JobStore,
    monkeypatch: pytest.MonkeyPatch,
    aws: AwsClients,
) -> None:
    job = submitted(make_spec(tmp_path), store, aws)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    ghost = api.open_job(job.remote_id, store=store, client=AwsClients.create(REGION, config=TEST_CONFIG))
    with pytest.raises(AuthError) as raised:
        ghost.refresh()
    assert not raised.value.retryable and "credentials" in str(raised.value)


# -- cost ------------------------------------------------------------------------------------------------


def test_estimate_is_instance_price_times_instances_and_hours(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, instance_type="ml.g5.12xlarge", instance_count=2, spot=True)
    found = SageMakerJob(spec).estimate(stats(spec.data.train))
    assert found.unit == "instance-hour" and found.unit_price_usd == 7.09
    assert found.runtime_hours is not None and found.quantity == pytest.approx(2 * found.runtime_hours)
    assert found.total_usd == pytest.approx(found.quantity * 7.09)
    assert any("spot capacity" in note for note in found.assumptions)


def test_serverless_estimate_needs_a_token_price(tmp_path: Path, fth_home: Path) -> None:
    spec = make_spec(tmp_path, mode="serverless", model_package_group_arn="arn:aws:sagemaker:us-east-1:1:x")
    with pytest.raises(ConfigError, match=r"no sagemaker price for 'serverless:Qwen/Qwen2.5-0.5B-Instruct'"):
        SageMakerJob(spec).estimate(stats(spec.data.train))
    fth_home.mkdir(parents=True, exist_ok=True)
    (fth_home / "catalog.yaml").write_text(
        "training:\n  - {provider: sagemaker, model: 'serverless:Qwen/Qwen2.5-0.5B-Instruct', usd: 2.0,"
        " unit: 1M tokens, as_of: 2026-11-01, source: test, verified: false}\n"
    )
    counted = stats(spec.data.train)
    found = SageMakerJob(spec).estimate(counted)
    assert found.billed_tokens == counted.tokens * 2 and found.total_usd == pytest.approx(counted.tokens * 2 / 1e6 * 2)


def test_the_packaged_trainer_source_is_reproducible(tmp_path: Path) -> None:
    from providers.sagemaker_request import package_source

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = package_source(tmp_path / "a", ["peft>=0.13"]).read_bytes()
    assert package_source(tmp_path / "b", ["peft>=0.13"]).read_bytes() == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        member = tar.extractfile("requirements.txt")
        assert member is not None and member.read() == b"peft>=0.13\n"
        assert all(m.mtime == 0 and m.uid == 0 for m in tar.getmembers())


def test_tags_aws_refuses_are_mended_and_fth_s_own_cannot_be_overridden(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    raw = make_spec(tmp_path, tags={"fth:idempotency-key": "mine", "team": "support"}).model_dump()
    job = submitted(FineTuneSpec.from_dict({**raw, "name": "support assistant (v2), final!"}), store, aws)
    [sent] = emulator.created()
    found = {t["Key"]: t["Value"] for t in sent["Tags"]}
    assert found["fth:spec"] == "support assistant _v2__ final_"  # AWS's tag pattern: no ",()!"
    assert found["fth:idempotency-key"] == job.record.idempotency_key and found["team"] == "support"


def test_a_quantized_base_brings_bitsandbytes_into_the_container(
    emulator: SageMakerEmulator, tmp_path: Path, aws: AwsClients
) -> None:
    def requirements(spec: FineTuneSpec) -> list[str]:
        with tarfile.open(
            fileobj=io.BytesIO(s3_text(emulator, SageMakerJob(spec, client=aws).prepare().files["code"]))
        ) as tar:
            member = tar.extractfile("requirements.txt")
            assert member is not None
            return member.read().decode().split()

    plain = requirements(make_spec(tmp_path))
    assert any(r.startswith("peft") for r in plain) and not any(r.startswith("bitsandbytes") for r in plain)
    quantized = requirements(make_spec(tmp_path, hyperparameters={"quantize": "4bit"}))  # what the trainer applies
    assert any(r.startswith("bitsandbytes") for r in quantized)
    assert not any(r.startswith(("torch", "finetune-hub")) for r in quantized)


def test_following_a_job_that_ends_before_it_logs_shows_why(
    emulator: SageMakerEmulator, tmp_path: Path, store: JobStore, aws: AwsClients
) -> None:
    job = submitted(make_spec(tmp_path), store, aws)
    job.log_poll_seconds = 0.02
    record = emulator.jobs[job.remote_id]
    record.failure = "ClientError: Failed to pull the training image"
    record.move("Failed", f"Training job failed. Reason: {record.failure}", emulator.clock.now())  # no log lines
    emulator.faults.plan("429", on="SageMaker.DescribeTrainingJob")  # one throttled poll: retried, not fatal
    job.retry_sleep = staticmethod(lambda seconds: None)  # type: ignore[method-assign]
    lines = list(job.logs(follow=True))
    assert any("Failed to pull the training image" in line for line in lines), lines


def test_a_cutoff_in_the_catalog_stops_a_sagemaker_submit(tmp_path: Path, fth_home: Path) -> None:
    fth_home.mkdir(parents=True, exist_ok=True)
    (fth_home / "catalog.yaml").write_text(
        "lifecycle:\n  - {provider: sagemaker, model: 'Qwen/*', event: job_creation_cutoff, date: 2026-01-01,"
        " source: test, verified: false, alternatives: [local]}\n"
    )
    problems = [p for p in api.plan(make_spec(tmp_path), "sagemaker").problems if p.severity == "error"]
    assert any("job creation cutoff was 2026-01-01" in p.message for p in problems), problems
