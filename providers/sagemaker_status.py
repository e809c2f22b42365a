"""Reading a SageMaker training job back: its DescribeTrainingJob answer as a JobState, events and a
JobResult. Pure functions of the answer (no network)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from finetune_hub.job import JobState
from finetune_hub.records import JobEvent, JobResult, JobStatus

Q, R = JobStatus.QUEUED, JobStatus.RUNNING
_SECONDARY = {  # SecondaryStatus while TrainingJobStatus is InProgress
    "Pending": Q,
    "Starting": Q,
    "LaunchingMLInstances": Q,
    "PreparingTrainingStack": Q,
    "DownloadingTrainingImage": Q,
    "Interrupted": Q,  # spot capacity reclaimed: waiting to restart
    "Downloading": R,
    "Training": R,
    "Uploading": R,
    "Restarting": R,
    "Updating": R,
    "Stopping": JobStatus.CANCELLING,
}
_PRIMARY = {
    "InProgress": Q,
    "Completed": JobStatus.SUCCEEDED,
    "Failed": JobStatus.FAILED,
    "Stopping": JobStatus.CANCELLING,
    "Stopped": JobStatus.CANCELLED,
    "Deleting": JobStatus.UNKNOWN,
}
#: native status: "<TrainingJobStatus>/<SecondaryStatus>", or the primary alone. Jobs stopped by
#: SageMaker's own limits are failures to explain, not cancellations.
STATUS_MAP: Mapping[str, JobStatus] = MappingProxyType(
    {
        **_PRIMARY,
        **{f"InProgress/{s}": v for s, v in _SECONDARY.items()},
        "Stopped/MaxRuntimeExceeded": JobStatus.FAILED,
        "Stopped/MaxWaitTimeExceeded": JobStatus.FAILED,
    }
)


def state(job: Mapping[str, Any]) -> JobState:
    primary, secondary = job.get("TrainingJobStatus", ""), job.get("SecondaryStatus")
    native = f"{primary}/{secondary}" if secondary else primary
    status = STATUS_MAP.get(native) or STATUS_MAP.get(primary, JobStatus.UNKNOWN)
    error = None
    if status is JobStatus.FAILED:
        error = job.get("FailureReason") or f"SageMaker stopped the job: {secondary or primary}"
    progress = None
    if info := job.get("ProgressInfo"):  # reported by serverless jobs
        per_epoch, epochs = info.get("TotalStepCountPerEpoch"), info.get("MaxEpoch")
        if per_epoch and epochs:
            done = (info.get("CurrentEpoch", 1) - 1) * per_epoch + info.get("CurrentStep", 0)
            progress = max(0.0, min(1.0, done / (per_epoch * epochs)))
    return JobState(status, native, error=error, progress=progress, detail=secondary)


def events(job: Mapping[str, Any]) -> list[JobEvent]:
    """SecondaryStatusTransitions as events, in time order."""
    found = []
    for transition in job.get("SecondaryStatusTransitions", []):
        status, started = transition["Status"], transition["StartTime"]
        found.append(
            JobEvent(
                time=started,
                message=f"{status}: {transition.get('StatusMessage') or status}",
                level="error" if status in ("Failed", "MaxRuntimeExceeded", "MaxWaitTimeExceeded") else "info",
                kind="status",
                data={"status": status},
                id=f"{job['TrainingJobName']}:{status}:{started.timestamp():.3f}",
            )
        )
    return sorted(found, key=lambda e: e.time)


def billed(job: Mapping[str, Any]) -> JobResult | None:
    """What the job is billed for: BillableTimeInSeconds (per instance), or tokens on serverless jobs."""
    seconds, tokens = job.get("BillableTimeInSeconds"), job.get("BillableTokenCount")
    if seconds is None and tokens is None:
        return None
    return JobResult(trained_tokens=tokens, billable_seconds=float(seconds) if seconds is not None else None)


def result(job: Mapping[str, Any], mode: str) -> JobResult:
    artifact = job.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    package = job.get("OutputModelPackageArn")
    training, billed_for = job.get("TrainingTimeInSeconds"), billed(job) or JobResult()
    billable = billed_for.billable_seconds
    extra: dict[str, Any] = {"mode": mode, "training_seconds": training}
    if mode == "trainer":
        resources = job.get("ResourceConfig", {})
        extra |= {"instance_type": resources.get("InstanceType"), "instance_count": resources.get("InstanceCount")}
        if job.get("EnableManagedSpotTraining") and training and billable is not None:
            extra["spot_savings_pct"] = round(100 * (1 - billable / training), 1)
    hint = (
        f"registered in the Model Registry as {package}; deploy it from there"
        if package
        else f"the LoRA adapter (PEFT format) is inside {artifact}: download, untar, then "
        "peft.PeftModel.from_pretrained(base_model, folder)"
    )
    return JobResult(
        model=package or artifact,
        artifact=artifact,
        trained_tokens=billed_for.trained_tokens,
        billable_seconds=billed_for.billable_seconds,
        metrics={m["MetricName"]: float(m["Value"]) for m in job.get("FinalMetricDataList", [])},
        deployment_hint=hint,
        extra=extra,
    )
