"""Amazon SageMaker: the project's own LoRA trainer in a SageMaker training job (mode "trainer"), or
SageMaker's serverless model customization (mode "serverless", `ServerlessJobConfig`).

Both are one `CreateTrainingJob` call; the job name is derived from the idempotency key, so a retried
submit finds the job it already created. Data and the trainer's source go to S3 under content-addressed
keys. Status comes from DescribeTrainingJob (primary + secondary status), events from
SecondaryStatusTransitions, logs from CloudWatch (/aws/sagemaker/TrainingJobs). Docs: docs/sagemaker.md.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from finetune_hub.errors import AuthError, ConfigError, NotFound, ProviderError, QuotaError
from finetune_hub.job import FineTuneJob, JobState, PreparedData
from finetune_hub.records import Capability, Checkpoint, JobEvent, JobResult, JobStatus, Problem
from providers import sagemaker_request as req
from providers import sagemaker_status as status
from providers.sagemaker_aws import (
    AwsClients,
    default_region,
    knows_serverless_jobs,
    log_streams,
    read_streams,
    translate,
)
from providers.trainer_values import learning_rate_warnings

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$")
_SECRETISH = ("TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "API_KEY", "ACCESS_KEY", "PRIVATE_KEY")


class SageMakerSettings(BaseModel):
    """`providers: {sagemaker: {...}}` in the spec. Credentials never go here (boto3's chain finds them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["trainer", "serverless"] = "trainer"
    role_arn: str | None = Field(None, description="IAM role SageMaker assumes (reads the data, writes the model)")
    bucket: str | None = Field(None, description="S3 bucket for data, trainer source, checkpoints and output")
    prefix: str = Field("finetune-hub", description="key prefix inside the bucket")
    region: str | None = Field(None, description="AWS region; default: AWS_REGION / the profile")
    # trainer mode
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = Field(1, ge=1, le=64, description="more than one: torchrun across instances")
    volume_size_gb: int = Field(100, ge=1, le=16384)
    spot: bool = Field(False, description="managed spot training (checkpoints resume after interruptions)")
    max_runtime_hours: float | None = Field(None, gt=0, le=28 * 24, description="trainer default: 24")
    max_wait_hours: float | None = Field(None, gt=0, description="spot only; default: 2 × max_runtime_hours")
    image_uri: str | None = Field(None, description="training image; default: a PyTorch 2.7 SageMaker DLC")
    environment: dict[str, str] = Field(default_factory=dict)
    hyperparameters: dict[str, Any] = Field(default_factory=dict, description="extra trainer/recipe values")
    requirements: list[str] | None = Field(None, description="pip requirements installed in the container")
    tags: dict[str, str] = Field(default_factory=dict)
    # serverless mode
    model_package_group_arn: str | None = Field(None, description="Model Registry group for the tuned model")
    peft: Literal["LORA", "FULL"] = "LORA"
    accept_eula: bool = False
    hub_content_version: str | None = None
    sequence_length: str | None = Field(None, description='e.g. "8K"')

    @field_validator("environment")
    @classmethod
    def _no_secrets(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if any(s in key.upper() for s in _SECRETISH):
                raise ValueError(
                    f"environment.{key} looks like a credential: a training job's Environment is shown by "
                    "DescribeTrainingJob to anyone who can read the job; read it inside the job from "
                    "AWS Secrets Manager instead"
                )
        return env


class SageMakerJob(FineTuneJob):
    provider = "sagemaker"
    settings_model = SageMakerSettings
    capabilities: ClassVar[Mapping[Capability, str | None]] = MappingProxyType(
        {
            Capability.SFT: None,
            Capability.DPO: None,  # serverless mode only; check() says so in trainer mode
            Capability.LORA_RANK: None,
            Capability.EPOCHS: None,
            Capability.LEARNING_RATE: None,
            Capability.LEARNING_RATE_MULTIPLIER: None,  # scales the trainer's default, 2e-4 (as for local)
            Capability.BATCH_SIZE: None,
            Capability.SEED: None,
            Capability.VALIDATION: None,
            Capability.EVENTS: None,
            Capability.CHECKPOINTS: None,
            Capability.CANCEL: None,
            Capability.PAUSE: "SageMaker training jobs cannot be paused (stop, then start a new job)",
            Capability.PREDICT: "the adapter is an S3 artifact; serving it needs an endpoint you deploy",
            Capability.LOGS: None,
        }
    )
    status_map: ClassVar[Mapping[str, JobStatus]] = status.STATUS_MAP
    settings: SageMakerSettings
    #: seconds between CloudWatch polls in `logs(follow=True)`
    log_poll_seconds: float = 5.0

    # -- set-up --------------------------------------------------------------------------------------

    @property
    def clients(self) -> AwsClients:
        if not isinstance(self.client, AwsClients):  # a boto3.Session was injected: build its clients once
            self._client = AwsClients(*(self.client.client(name) for name in ("sagemaker", "s3", "logs")))
        clients: AwsClients = self.client
        return clients

    def connect(self) -> AwsClients:
        return AwsClients.create(self.region())

    def region(self) -> str:
        region = self.settings.region or default_region()
        if not region:
            raise ConfigError("sagemaker: no AWS region", hint="set providers.sagemaker.region, or AWS_REGION")
        return region

    def account_id(self) -> str:
        # uploads are de-duplicated per bucket (no STS call needed to know where they went)
        return f"s3://{self.settings.bucket}/{self.settings.prefix}" if self.settings.bucket else "unconfigured"

    def _key(self, *parts: str) -> str:
        """An S3 key under the settings' prefix; an empty prefix adds no leading slash."""
        return "/".join(p for p in (self.settings.prefix.strip("/"), *parts) if p)

    @property
    def _bucket_uri(self) -> str:
        return f"s3://{self.settings.bucket}/{self._key()}".rstrip("/")

    @property
    def _serverless(self) -> bool:
        return self.settings.mode == "serverless"

    # -- before submitting ---------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        s, spec, found = self.settings, self.spec, list[Problem]()

        def error(message: str, hint: str | None = None) -> None:
            found.append(Problem("error", f"sagemaker: {message}", hint))

        def warn(message: str, hint: str | None = None) -> None:
            found.append(Problem("warning", f"sagemaker: {message}", hint))

        if not s.role_arn:
            error(
                "no IAM role: SageMaker needs one to read the data and write the model",
                "set providers.sagemaker.role_arn: arn:aws:iam::<account>:role/<execution role>",
            )
        elif not ROLE_ARN.match(s.role_arn):
            error(f"role_arn '{s.role_arn}' is not an IAM role ARN", "arn:aws:iam::<12-digit account>:role/<name>")
        if not s.bucket:
            error("no S3 bucket for the data and the model", "set providers.sagemaker.bucket: <bucket name>")
        if not (s.region or default_region()):
            error("no AWS region", "set providers.sagemaker.region, or AWS_REGION in the environment")
        if self._serverless:
            if not knows_serverless_jobs():
                error("the installed boto3 predates serverless model customization", "pip install -U boto3")
            if not s.model_package_group_arn:
                error(
                    "serverless jobs register the tuned model in a Model Registry group",
                    "set providers.sagemaker.model_package_group_arn",
                )
            ignored = [k for k, v in spec.hyperparameters.model_dump().items() if v is not None]
            ignored += ["seed"] if spec.seed is not None else []
            ignored += ["lora.rank/alpha/dropout"] if spec.lora is not None else []
            if ignored:
                warn(
                    f"serverless mode uses the hub recipe's values; not sent: {', '.join(ignored)}",
                    "pass recipe hyperparameters by name in providers.sagemaker.hyperparameters",
                )
            trainer_only = {"instance_type", "instance_count", "spot", "image_uri", "environment", "requirements"}
            if set_here := sorted(trainer_only & s.model_fields_set):
                warn(f"ignored in serverless mode (SageMaker picks the hardware): {', '.join(set_here)}")
            return found
        if spec.method != "sft":
            error(f"method '{spec.method}' needs mode: serverless (the project's trainer does SFT)")
        if s.max_wait_hours and not s.spot:
            warn("max_wait_hours only applies with spot: true")
        if s.spot and s.max_wait_hours and s.max_wait_hours < (s.max_runtime_hours or 24):
            error("max_wait_hours must be at least max_runtime_hours (SageMaker rule for spot jobs)")
        found += [Problem("error", f"sagemaker: {m}") for m in req.trainer_config_problems(spec, s)]
        found += [Problem("warning", f"sagemaker: {m}") for m in learning_rate_warnings(spec)]
        return found

    # -- upload and create ---------------------------------------------------------------------------

    def prepare(self) -> PreparedData:
        spec, files = self.spec, dict[str, str]()
        with tempfile.TemporaryDirectory(prefix="fth-sagemaker-") as tmp:
            converted, report = self.converted_data(Path(tmp))
            for role, out in converted.items():
                files[role] = self._upload(out, "data", "data.jsonl").rsplit("/", 1)[0] + "/"
            if not self._serverless:
                quantized = req.job_trainer_values(spec, self.settings).get("quantize", "none") != "none"
                requirements = self.settings.requirements or req.source_requirements(quantized)
                archive = req.package_source(Path(tmp), requirements)
                files["code"] = self._upload(archive, "code", req.SOURCE_ARCHIVE)
                if (model := spec.base_model_for(self.provider)).startswith("s3://"):
                    files["model"] = model.rstrip("/") + "/"
        return PreparedData(files, report)

    def _upload(self, path: Path, kind: str, filename: str) -> str:
        """Upload `path` to <prefix>/<kind>/<content hash>/<filename> unless it is already there."""
        from finetune_hub.data import content_hash

        digest = content_hash(path)
        key = self._key(kind, digest, filename)
        s3, bucket = self.clients.s3, self.settings.bucket

        def upload() -> str:
            try:
                with translate("S3 HeadObject", missing_is_not_found=True):
                    s3.head_object(Bucket=bucket, Key=key)  # uploaded before, by an earlier run or another machine
            except NotFound:
                with translate("S3 upload"):
                    s3.upload_file(str(path), bucket, key)
            return f"s3://{bucket}/{key}"

        # S3 itself is asked, not the job store's memory: an object deleted since (a lifecycle rule, a cleanup)
        # is uploaded again, and asking costs the one request checking the memory would
        return self.retrying(upload)

    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        name = req.job_name(self.spec.name, idempotency_key)
        if self._exists(name):
            return name
        inputs = req.JobInputs(
            name=name,
            spec=self.spec,
            settings=self.settings,
            region=self.clients.region,
            files=prepared.files,
            bucket_uri=self._bucket_uri,
            tags=req.tags(self.local_id, idempotency_key, self.spec.name, self.settings.tags),
            local_id=self.local_id,
        )
        request = req.serverless_request(inputs) if self._serverless else req.trainer_request(inputs)
        try:
            with translate("CreateTrainingJob"):
                self.clients.sagemaker.create_training_job(**request)
        except (AuthError, QuotaError):
            raise
        except ProviderError:
            # a lost reply (the job exists) or a name already taken by an earlier attempt: same job
            if self._exists(name):
                return name
            raise
        return name

    def _exists(self, name: str) -> bool:
        try:
            self._describe(name)
        except NotFound:
            return False
        return True

    # -- after submitting ----------------------------------------------------------------------------

    def _describe(self, name: str | None = None) -> dict[str, Any]:
        def describe() -> dict[str, Any]:
            with translate("DescribeTrainingJob", missing_is_not_found=True):
                found: dict[str, Any] = self.clients.sagemaker.describe_training_job(
                    TrainingJobName=name or self.remote_id
                )
            return found

        return describe() if name else self.fetched("job", describe)

    def refresh(self) -> JobState:
        return status.state(self._describe())

    def events(self, since: datetime | None = None) -> list[JobEvent]:
        return [e for e in status.events(self._describe()) if since is None or e.time > since]

    def checkpoints(self) -> list[Checkpoint]:
        """What the trainer synced to the job's CheckpointConfig S3 URI (one folder per checkpoint)."""
        if self._serverless:
            return []
        prefix = self._key("checkpoints", str(self.remote_id), "checkpoints/")
        folders: dict[str, datetime] = {}
        with translate("S3 ListObjectsV2"):
            pages = self.clients.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.settings.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    folder, _, rest = obj["Key"][len(prefix) :].partition("/")
                    if rest == "meta.json":  # the trainer writes it last: the checkpoint is complete
                        folders[folder] = obj["LastModified"]
        steps = {name: int(m.group()) if (m := re.search(r"\d+$", name)) else None for name in folders}
        return [
            Checkpoint(
                id=name,
                step=steps[name],
                created_at=folders[name],
                location=f"s3://{self.settings.bucket}/{prefix}{name}/",
            )
            for name in sorted(folders, key=lambda n: (steps[n] is None, steps[n] or 0, n))
        ]

    def cancel(self) -> JobState:
        state = self.refresh()
        if state.status.terminal or state.status is JobStatus.CANCELLING:  # StopTrainingJob refuses a stopping job
            return state
        with translate("StopTrainingJob"):
            self.clients.sagemaker.stop_training_job(TrainingJobName=self.remote_id)
        return self.refresh()

    def result(self) -> JobResult:
        described = self._describe()
        if described.get("TrainingJobStatus") != "Completed":
            raise self.no_result_yet(str(described.get("TrainingJobStatus")))
        return status.result(described, self.settings.mode)

    def spent(self) -> JobResult | None:
        """A failed or stopped training job is billed for the time it ran."""
        described = self._describe()
        if described.get("TrainingJobStatus") not in ("Failed", "Stopped"):
            return None
        return status.billed(described)

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The job's CloudWatch log lines (every instance's stream), polling until the job ends with follow."""
        logs, name, tokens = self.clients.logs, self.remote_id, dict[str, str]()

        def poll() -> tuple[list[str], list[str]]:
            """The streams and their new lines; a throttled call is retried, lines already read are kept (the
            tokens have moved past them)."""
            streams, lines = self.retrying(lambda: log_streams(logs, name)), list[str]()
            self.retrying(lambda: lines.extend(read_streams(logs, streams, tokens)))
            return streams, lines

        logged = False
        while True:
            streams, new = poll()
            logged = logged or bool(streams)
            yield from new
            if not follow:
                if not streams:  # nothing logged yet: the status transitions say what is happening
                    yield from super().logs()
                return
            if not new and self.retrying(self.refresh).status.terminal:
                streams, new = poll()  # lines flushed at the end
                yield from new
                logged = logged or bool(streams)
                if not logged:  # it ended before the container logged a line (an image pull, the role): the
                    yield from super().logs()  # transitions say why
                return
            time.sleep(self.log_poll_seconds)
