"""What the SageMaker adapter sends: job names, the CreateTrainingJob request for each mode, the
trainer's hyperparameters, the container image, and the packaged `local_backend` source.

Pure functions of the spec and settings (no network), so the request shape is easy to test and read.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.trainer_values import trainer_values

if TYPE_CHECKING:
    from finetune_hub.spec import FineTuneSpec
    from providers.sagemaker import SageMakerSettings

#: the script SageMaker's training toolkit runs inside the container, relative to the unpacked source
ENTRY_POINT = "local_backend/sagemaker_entry.py"
SOURCE_ARCHIVE = "sourcedir.tar.gz"

DLC_TAG = "pytorch-training:2.7.1-gpu-py312-cu128-ubuntu22.04-sagemaker"
#: PyTorch training DLC (SageMaker flavour) used when the settings name no `image_uri`. Its training
#: toolkit downloads `sagemaker_submit_directory`, pip-installs requirements.txt and runs the entry point.
DEFAULT_IMAGE = "{account}.dkr.ecr.{region}.amazonaws.com{suffix}/" + DLC_TAG
#: the DLC registry account where it is not 763104351884 (aws/deep-learning-containers available_images.md)
DLC_ACCOUNTS: Mapping[str, str] = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-northeast-3": "364406365360",
    "ap-southeast-3": "907027046896",
    "eu-south-1": "692866216735",
    "me-south-1": "217643126080",
    "me-central-1": "914824155844",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
}

#: the hyperparameter names are TrainConfig's field names; these are filled in by the entry point
PATH_FIELDS = frozenset({"train_file", "validation_file", "output_dir"})
TAG_JOB_ID, TAG_KEY, TAG_SPEC = "fth:job-id", "fth:idempotency-key", "fth:spec"


def job_name(spec_name: str, idempotency_key: str) -> str:
    """A training job name derived from the idempotency key, so a retried submit names the same job
    (SageMaker names are unique per account and region: the name itself is the idempotency check)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", spec_name).strip("-")[:30].strip("-") or "job"
    return f"fth-{slug}-{idempotency_key.removeprefix('fth-')[:16]}"


def image_uri(region: str, override: str | None) -> str:
    if override:
        return override
    suffix = ".cn" if region.startswith("cn-") else ""
    return DEFAULT_IMAGE.format(account=DLC_ACCOUNTS.get(region, "763104351884"), region=region, suffix=suffix)


def hub_content_arn(model: str, region: str, version: str | None) -> str:
    """The SageMaker Public Hub content ARN of a base model given by hub name (or already as an ARN)."""
    if model.startswith("arn:"):
        return model
    return f"arn:aws:sagemaker:{region}:aws:hub-content/SageMakerPublicHub/Model/{model}" + (
        f"/{version}" if version else ""
    )


def job_trainer_values(spec: FineTuneSpec, settings: SageMakerSettings) -> dict[str, Any]:
    """The trainer's config values from the spec, with the settings' `hyperparameters` passed through on top."""
    return trainer_values(spec, spec.base_model_for("sagemaker")) | dict(settings.hyperparameters)


def trainer_config_problems(spec: FineTuneSpec, settings: SageMakerSettings) -> list[str]:
    """Values the trainer would reject, found before upload instead of an hour into a paid job."""
    from local_backend.config import ConfigError as TrainConfigError
    from local_backend.config import TrainConfig

    values = job_trainer_values(spec, settings)
    if paths := sorted(PATH_FIELDS & set(values)):
        return [f"hyperparameters: {', '.join(paths)} are set by the job itself (from its S3 channels)"]
    try:
        TrainConfig.from_dict({"train_file": "train.jsonl", "output_dir": "out", **values})
    except (TrainConfigError, TypeError) as exc:
        return [f"{exc} (from the spec and providers.sagemaker.hyperparameters)"]
    return []


def encode_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """Hyperparameters as SageMaker wants them (strings), JSON-encoded the way the training toolkit decodes
    them, so types survive the trip ("3" → 3, '"Qwen/Qwen2.5-0.5B"' → the string)."""
    return {key: json.dumps(value) for key, value in values.items()}


def s3_channel(name: str, uri: str, *, distribution: str = "FullyReplicated") -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": distribution}
        },
    }


def tags(local_id: str | None, key: str, spec_name: str, extra: Mapping[str, str]) -> list[dict[str, str]]:
    # a spec name may hold characters AWS refuses in tag values (",", "(", "!"): they become "_"
    name = "".join(c if c.isalnum() or c.isspace() or c in "_.:/=+-@" else "_" for c in spec_name)[:256]
    found = {**extra, TAG_KEY: key, TAG_SPEC: name, **({TAG_JOB_ID: local_id} if local_id else {})}
    return [{"Key": k, "Value": v} for k, v in found.items()]


@dataclass(frozen=True)
class JobInputs:
    """Everything a CreateTrainingJob request is built from."""

    name: str
    spec: FineTuneSpec
    settings: SageMakerSettings
    region: str
    files: Mapping[str, str]  # "train", "validation", "code", "model" → S3 URI
    bucket_uri: str  # s3://<bucket>/<prefix>
    tags: list[dict[str, str]]
    local_id: str | None = None


def trainer_request(job: JobInputs) -> dict[str, Any]:
    """CreateTrainingJob for the project's own LoRA trainer in a PyTorch deep-learning container."""
    settings, files = job.settings, job.files
    values = job_trainer_values(job.spec, settings)
    channels = [s3_channel("training", files["train"])]
    if "validation" in files:
        channels.append(s3_channel("validation", files["validation"]))
    if "model" in files:  # base model weights from S3 instead of the Hugging Face Hub
        channels.append(s3_channel("model", files["model"]))
    runtime = int((settings.max_runtime_hours or 24) * 3600)
    toolkit = {"sagemaker_program": ENTRY_POINT, "sagemaker_submit_directory": files["code"]}
    request: dict[str, Any] = {
        "TrainingJobName": job.name,
        "RoleArn": settings.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri(job.region, settings.image_uri),
            "TrainingInputMode": "File",
            "MetricDefinitions": [dict(d) for d in METRIC_DEFINITIONS],
        },
        "HyperParameters": encode_hyperparameters(values | toolkit),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"{job.bucket_uri}/output"},
        "ResourceConfig": {
            "InstanceType": settings.instance_type,
            "InstanceCount": settings.instance_count,
            "VolumeSizeInGB": settings.volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
        # checkpoints sync to S3 while training, so a spot interruption resumes where it stopped
        "CheckpointConfig": {"S3Uri": f"{job.bucket_uri}/checkpoints/{job.name}", "LocalPath": "/opt/ml/checkpoints"},
        "Environment": {
            "PYTHONUNBUFFERED": "1",
            "TOKENIZERS_PARALLELISM": "false",
            **({"FTH_JOB_ID": job.local_id} if job.local_id else {}),
            **settings.environment,
        },
        "Tags": job.tags,
    }
    if settings.spot:
        wait = int((settings.max_wait_hours or 2 * runtime / 3600) * 3600)
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = wait
    return request


def serverless_request(job: JobInputs) -> dict[str, Any]:
    """CreateTrainingJob for serverless model customization: SageMaker picks the hardware and the recipe."""
    settings, files = job.settings, job.files
    config: dict[str, Any] = {
        "BaseModelArn": hub_content_arn(job.spec.base_model_for("sagemaker"), job.region, settings.hub_content_version),
        "JobType": "FineTuning",
        "CustomizationTechnique": job.spec.method.upper(),
        "AcceptEula": settings.accept_eula,
    }
    if settings.peft == "LORA":  # omitted means full fine-tuning
        config["Peft"] = "LORA"
    if settings.sequence_length:
        config["SequenceLength"] = settings.sequence_length
    channels = [s3_channel("train", files["train"])]
    if "validation" in files:
        channels.append(s3_channel("validation", files["validation"]))
    request: dict[str, Any] = {
        "TrainingJobName": job.name,
        "RoleArn": settings.role_arn,
        "ServerlessJobConfig": config,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"{job.bucket_uri}/output"},
        "ModelPackageConfig": {"ModelPackageGroupArn": settings.model_package_group_arn},
        "Tags": job.tags,
    }
    if settings.hyperparameters:  # recipe names from the hub (e.g. learning_rate); sent as given
        request["HyperParameters"] = {k: str(v) for k, v in settings.hyperparameters.items()}
    if settings.max_runtime_hours:
        request["StoppingCondition"] = {"MaxRuntimeInSeconds": int(settings.max_runtime_hours * 3600)}
    return request


#: the local trainer prints "step 3/10 loss 1.2345 lr ..." and "step 10/10 val_loss 1.3456" (loop.py);
#: SageMaker turns the matches into metrics, the last value of each into FinalMetricDataList
METRIC_DEFINITIONS = (
    {"Name": "train:loss", "Regex": r"step \d+/\d+ loss ([0-9.eE+-]+)"},
    {"Name": "validation:loss", "Regex": r"step \d+/\d+ val_loss ([0-9.eE+-]+)"},
)


# -- the trainer's source, packaged for the training toolkit -------------------------------------------


def source_requirements(quantized: bool = False) -> list[str]:
    """What the container installs on top of the DLC: the `local` extra of finetune-hub (and the `qlora` one
    for a quantized base), minus torch (the image brings a CUDA build of it) and the extras' own references."""
    from importlib.metadata import PackageNotFoundError, requires

    try:
        declared = requires("finetune-hub") or []
    except PackageNotFoundError:
        declared = []
    extras = "local|qlora" if quantized else "local"
    wanted = [r.split(";")[0].strip() for r in declared if re.search(rf"extra\s*==\s*['\"]({extras})['\"]", r)]
    return [r for r in wanted if not re.match(r"(torch|finetune-hub)\b", r)]


def package_source(out_dir: Path, requirements: list[str]) -> Path:
    """`local_backend` plus a requirements.txt as a reproducible tar.gz: the same source always gives the
    same bytes (sorted entries, zeroed times and owners), so the archive is content-addressed in S3."""
    import local_backend

    package = Path(local_backend.__file__).parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))

        for path in sorted(package.rglob("*.py")):
            if "__pycache__" not in path.parts:
                add(f"local_backend/{path.relative_to(package).as_posix()}", path.read_bytes())
        add("requirements.txt", "".join(f"{r}\n" for r in requirements).encode())
    out = out_dir / SOURCE_ARCHIVE
    out.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return out
