"""Google Vertex AI: Gemini supervised and preference tuning through google-genai, data in Cloud Storage.

Uses the supported client, `google-genai` with `vertexai=True` and the API version set explicitly, not the
deprecated `vertexai.tuning.sft`. The spec's data is converted to Vertex's `contents` JSONL (preference pairs:
`contents` + `completions`) by `finetune_hub.data`, uploaded once under a content-addressed name, and every
job carries labels with the local job id and the idempotency key, so a retried submit finds the job it already
created instead of adding one.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import warnings
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from google.api_core import exceptions as gcs_errors
from google.genai import types

from finetune_hub import data
from finetune_hub.errors import ConfigError, DataError, NotFound, ProviderError
from finetune_hub.job import FineTuneJob, JobState, PreparedData
from finetune_hub.records import Capability, Checkpoint, JobEvent, JobResult, JobStatus, Problem
from providers.vertex_client import VertexClients, VertexSettings, make_clients, translate

# LoRA rank → Vertex's adapter_size enum (sizes 1–32; which ones a model accepts varies by model).
ADAPTER_SIZES = {
    1: types.AdapterSize.ADAPTER_SIZE_ONE,
    2: types.AdapterSize.ADAPTER_SIZE_TWO,
    4: types.AdapterSize.ADAPTER_SIZE_FOUR,
    8: types.AdapterSize.ADAPTER_SIZE_EIGHT,
    16: types.AdapterSize.ADAPTER_SIZE_SIXTEEN,
    32: types.AdapterSize.ADAPTER_SIZE_THIRTY_TWO,
}
JOB_LABEL, KEY_LABEL = "fth-job", "fth-key"
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def adapter_size(rank: int) -> int:
    """The adapter size nearest to a LoRA rank on a log scale (ties go to the smaller size)."""
    return min(ADAPTER_SIZES, key=lambda size: (abs(math.log2(size) - math.log2(rank)), size))


def label_value(text: str) -> str:
    """A Vertex label value: at most 63 of lowercase letters, digits, `_` and `-`."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def _state(job: types.TuningJob) -> str:
    return job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"


def _data_stats(job: types.TuningJob) -> Any:
    stats = job.tuning_data_stats
    return stats and (stats.supervised_tuning_data_stats or stats.preference_optimization_data_stats)


def _epochs(job: types.TuningJob) -> int | None:
    """The job's epochs; where the spec left them to Vertex, the last checkpoint's epoch (one per epoch)."""
    spec = job.supervised_tuning_spec or job.preference_optimization_spec
    if spec and spec.hyper_parameters and spec.hyper_parameters.epoch_count:
        return spec.hyper_parameters.epoch_count
    checkpoints = job.tuned_model.checkpoints if job.tuned_model else None
    return max((int(c.epoch) for c in checkpoints or [] if c.epoch), default=None)


class VertexJob(FineTuneJob):
    provider = "vertex"
    settings_model = VertexSettings
    capabilities: ClassVar[Mapping[Capability, str | None]] = {
        Capability.SFT: None,
        Capability.DPO: None,  # PREFERENCE_TUNING, on Vertex's preference file (contents + completions)
        Capability.LORA_RANK: None,
        Capability.EPOCHS: None,
        Capability.LEARNING_RATE: "Gemini tuning takes learning_rate_multiplier, not an absolute rate",
        Capability.LEARNING_RATE_MULTIPLIER: None,
        Capability.BATCH_SIZE: "Vertex picks the batch size for Gemini models",
        Capability.SEED: "the Vertex tuning API has no seed",
        Capability.VALIDATION: None,
        Capability.EVENTS: None,
        Capability.CHECKPOINTS: None,
        Capability.CANCEL: None,
        Capability.PAUSE: "the Vertex tuning API cannot pause a job",
        Capability.PREDICT: None,
        Capability.LOGS: "the tuning API exposes no training logs; `fth logs` shows the job's events",
    }
    status_map: ClassVar[Mapping[str, JobStatus]] = {
        "JOB_STATE_UNSPECIFIED": JobStatus.UNKNOWN,
        "JOB_STATE_QUEUED": JobStatus.QUEUED,
        "JOB_STATE_PENDING": JobStatus.QUEUED,
        "JOB_STATE_RUNNING": JobStatus.RUNNING,
        "JOB_STATE_UPDATING": JobStatus.RUNNING,
        "JOB_STATE_PAUSED": JobStatus.PAUSED,
        "JOB_STATE_CANCELLING": JobStatus.CANCELLING,
        "JOB_STATE_SUCCEEDED": JobStatus.SUCCEEDED,
        "JOB_STATE_PARTIALLY_SUCCEEDED": JobStatus.SUCCEEDED,  # with a warning event
        "JOB_STATE_FAILED": JobStatus.FAILED,
        "JOB_STATE_EXPIRED": JobStatus.FAILED,
        "JOB_STATE_CANCELLED": JobStatus.CANCELLED,
    }

    # -- where: project, region, bucket ---------------------------------------------------------------

    def _resolved(self) -> dict[str, str | None]:
        s = self.settings
        return {
            "project": s.project or os.environ.get("GOOGLE_CLOUD_PROJECT"),
            "location": s.location or os.environ.get("GOOGLE_CLOUD_LOCATION"),
            "bucket": s.bucket or os.environ.get("FTH_VERTEX_BUCKET"),
        }

    def _missing(self, *names: str) -> list[Problem]:
        env = {"project": "GOOGLE_CLOUD_PROJECT", "location": "GOOGLE_CLOUD_LOCATION", "bucket": "FTH_VERTEX_BUCKET"}
        return [
            Problem("error", f"vertex: no {name} set", f"set providers.vertex.{name} in the spec, or ${env[name]}")
            for name, value in self._resolved().items()
            if name in names and not value
        ]

    def _require(self, *names: str) -> list[str]:
        if missing := self._missing(*names):
            raise ConfigError("\n".join(p.message for p in missing), hint="; ".join(p.hint or "" for p in missing))
        return [str(self._resolved()[name]) for name in names]

    def _bucket(self) -> tuple[str, str]:
        """(bucket, object prefix) from "name" or "gs://name/prefix"."""
        (where,) = self._require("bucket")
        bucket, _, prefix = where.removeprefix("gs://").partition("/")
        return bucket, (prefix or self.settings.prefix).strip("/")

    def account_id(self) -> str:
        where = self._resolved()
        return f"{where['project']}/{where['bucket']}"

    @property
    def sdk(self) -> VertexClients:
        """`self.client`, typed: the clients injected by the caller or built by `connect`."""
        clients: VertexClients = self.client
        return clients

    def connect(self) -> VertexClients:
        project, location = self._require("project", "location")
        with translate("connecting to Vertex AI"):
            return make_clients(
                project,
                location,
                api_version=self.settings.api_version,
                base_url=self.settings.base_url,
                timeout_s=self.settings.timeout_s,
            )

    # -- before submitting ----------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        spec, hyper = self.spec, self.spec.hyperparameters
        problems = self._missing("project", "location", "bucket")
        bucket = self._resolved()["bucket"]
        if bucket and not _BUCKET_NAME.match(bucket.removeprefix("gs://").partition("/")[0]):
            problems.append(Problem("error", f"vertex: '{bucket}' is not a valid Cloud Storage bucket name"))
        for key, value in self.settings.labels.items():
            if not _LABEL_KEY.match(key) or label_value(value) != value:
                hint = "keys start with a lowercase letter; keys and values use only a-z, 0-9, _ and - (≤63)"
                problems.append(Problem("error", f"vertex: label '{key}: {value}' is not a valid Vertex label", hint))
        if spec.lora is not None:
            size = adapter_size(spec.lora.rank)
            if size != spec.lora.rank:
                allowed = ", ".join(map(str, ADAPTER_SIZES))
                problems.append(
                    Problem("warning", f"vertex: lora.rank {spec.lora.rank} sent as adapter_size {size} ({allowed})")
                )
            for field in sorted({"alpha", "dropout", "target_modules", "quantize"} & spec.lora.model_fields_set):
                problems.append(Problem("warning", f"vertex: lora.{field} cannot be set on Vertex; ignored"))
        ignored = {
            "learning_rate": "Gemini tuning takes learning_rate_multiplier",
            "batch_size": "Vertex picks the batch size",
            "max_seq_length": "Vertex truncates examples at the model's limit",
            "warmup_ratio": "Vertex picks the schedule",
        }
        if spec.method != "dpo":
            ignored["beta"] = "beta applies to preference tuning (method: dpo) only"
        problems += [
            Problem("warning", f"vertex: hyperparameters.{field} ignored: {why}")
            for field, why in ignored.items()
            if getattr(hyper, field) is not None
        ]
        if spec.seed is not None:
            why = "the tuning API has no seed" + (
                "; it still seeds the validation split" if spec.data.validation_split else ""
            )
            problems.append(Problem("warning", f"vertex: seed ignored by Vertex: {why}"))
        model = self.base_model()
        if not model.startswith(("gemini-", "projects/", "translation-llm")):
            hint = "set base_model: {vertex: gemini-2.5-flash} (or another tunable Gemini model)"
            problems.append(Problem("warning", f"vertex: '{model}' does not look like a tunable Gemini model", hint))
        return problems

    def prepare(self) -> PreparedData:
        bucket, prefix = self._bucket()
        with tempfile.TemporaryDirectory(prefix="fth-vertex-") as tmp:
            converted, report = self.converted_data(Path(tmp))
            files = {role: self._upload_once(path, bucket, prefix) for role, path in converted.items()}
        return PreparedData(files, report)

    def _upload_once(self, path: Path, bucket: str, prefix: str) -> str:
        digest = data.content_hash(path)
        blob = self.sdk.storage.bucket(bucket).blob(f"{prefix}/{digest}.jsonl" if prefix else f"{digest}.jsonl")
        # the bucket itself is asked, not the job store's memory: an object deleted since (a lifecycle rule, a
        # cleanup) is uploaded again, and asking costs the one request checking the memory would
        return self.retrying(lambda: self._upload(path, blob, f"gs://{bucket}/{blob.name}"))

    def _upload(self, path: Path, blob: Any, uri: str) -> str:
        try:
            with translate(f"uploading training data to {uri}"):
                if not blob.exists(retry=None, timeout=self.settings.timeout_s):  # same name, same bytes
                    with contextlib.suppress(gcs_errors.PreconditionFailed):  # someone else just uploaded it
                        blob.upload_from_filename(
                            str(path), content_type="application/jsonl", if_generation_match=0, retry=None
                        )
        except NotFound:
            bucket = blob.bucket.name
            raise ConfigError(
                f"Cloud Storage bucket gs://{bucket} does not exist (or this account cannot see it)",
                hint=f"create it in the job's region (`gcloud storage buckets create gs://{bucket}`) or fix the bucket",
            ) from None
        return uri

    # -- the job --------------------------------------------------------------------------------------

    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        if existing := self._find(idempotency_key):
            return existing
        hyper, lora, dpo = self.spec.hyperparameters, self.spec.lora, self.spec.method == "dpo"
        validation = prepared.files.get("validation")
        labels = {**self.settings.labels, "tool": "finetune-hub", KEY_LABEL: label_value(idempotency_key)}
        if self.local_id:
            labels[JOB_LABEL] = label_value(self.local_id)
        config = types.CreateTuningJobConfig(
            method=types.TuningMethod.PREFERENCE_TUNING if dpo else types.TuningMethod.SUPERVISED_FINE_TUNING,
            validation_dataset=types.TuningValidationDataset(gcs_uri=validation) if validation else None,
            tuned_model_display_name=(self.spec.suffix or self.spec.name)[:128],
            description=" ".join(filter(None, ("finetune-hub", self.local_id, self.spec.name))),
            labels=labels,
            epoch_count=hyper.epochs,
            learning_rate_multiplier=hyper.learning_rate_multiplier,
            adapter_size=ADAPTER_SIZES[adapter_size(lora.rank)] if lora else None,
            beta=hyper.beta if dpo else None,
        )
        with translate("creating the tuning job"), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*tuning implementation is experimental")
            job: types.TuningJob = self.sdk.genai.tunings.tune(
                base_model=self.base_model(),
                training_dataset=types.TuningDataset(gcs_uri=prepared.files["train"]),
                config=config,
            )
        if not job.name:
            raise ProviderError("Vertex AI accepted the tuning job but returned no name", retryable=False)
        return job.name

    def _find(self, idempotency_key: str) -> str | None:
        """The job an earlier attempt created with this key (its reply may have been lost)."""
        value = label_value(idempotency_key)
        query = types.ListTuningJobsConfig(filter=f'labels.{KEY_LABEL}="{value}"', page_size=100)
        with translate("looking for a job created by an earlier attempt"):
            for job in self.sdk.genai.tunings.list(config=query):
                if (job.labels or {}).get(KEY_LABEL) == value:  # the filter is a hint; the label decides
                    return job.name
        return None

    def _name(self) -> str:
        """The job's resource name; a bare id is completed with the settings' project and region."""
        if self.remote_id.startswith("projects/"):
            return self.remote_id
        project, location = self._require("project", "location")
        return f"projects/{project}/locations/{location}/tuningJobs/{self.remote_id}"

    def _get(self) -> types.TuningJob:
        def get() -> types.TuningJob:
            with translate(f"reading tuning job {self.remote_id}"):
                return self.sdk.genai.tunings.get(name=self._name())

        return self.fetched("job", get)

    def refresh(self) -> JobState:
        job = self._get()
        native = _state(job)
        status = self.map_status(native)
        error = None
        if status is JobStatus.FAILED:
            error = (job.error.message if job.error else None) or f"the tuning job ended in {native}"
        detail = job.tuning_job_state.value if job.tuning_job_state else None
        return JobState(status, native, error=error, detail=detail)

    def events(self, since: datetime | None = None) -> list[JobEvent]:
        """Vertex has no event list: these come from the job's timestamps, stage and final state."""
        job = self._get()
        native, reason = _state(job), (job.error.message if job.error else None)
        found: list[JobEvent] = []

        def add(at: datetime | None, key: str, message: str, level: str = "info") -> None:
            if at is not None:
                at = at if at.tzinfo else at.replace(tzinfo=UTC)
                found.append(JobEvent(at, message, level=level, kind="status", id=key))

        add(job.create_time, "created", f"tuning job created: {job.base_model} → {job.tuned_model_display_name}")
        add(job.start_time, "started", "tuning started")
        if job.tuning_job_state:
            stage = job.tuning_job_state.value
            add(job.update_time, f"stage-{stage}", "stage: " + stage.removeprefix("TUNING_JOB_STATE_").lower())
        if native == "JOB_STATE_PARTIALLY_SUCCEEDED":
            why = f": {reason}" if reason else ""
            add(job.end_time, "ended", f"the job only partly succeeded ({native}){why}; check the model", "warn")
        elif self.map_status(native) is JobStatus.FAILED:
            add(job.end_time, "ended", f"tuning job ended in {native}: {reason or 'no reason given'}", "error")
        else:
            add(job.end_time, "ended", f"tuning job ended in {native}")
        found.sort(key=lambda e: e.time)
        return [e for e in found if since is None or e.time > since]

    def checkpoints(self) -> list[Checkpoint]:
        job = self._get()
        points = (job.tuned_model.checkpoints if job.tuned_model else None) or []
        found = [
            Checkpoint(
                id=point.checkpoint_id or str(number),
                step=point.step,
                location=point.endpoint,
                metrics={"epoch": float(point.epoch)} if point.epoch is not None else {},
            )
            for number, point in enumerate(points, start=1)
        ]
        return sorted(found, key=lambda c: c.step or 0)

    def cancel(self) -> JobState:
        with translate(f"cancelling tuning job {self.remote_id}"):
            self.sdk.genai.tunings.cancel(name=self._name())
        return self.refresh()

    def result(self) -> JobResult:
        job = self._get()
        tuned = job.tuned_model
        if tuned is None or not (tuned.endpoint or tuned.model):
            raise self.no_result_yet(_state(job))
        stats, epochs = _data_stats(job), _epochs(job)
        billable = stats.total_billable_token_count if stats else None
        extra = {
            "state": _state(job),
            "tuned_model": tuned.model,
            "endpoint": tuned.endpoint,
            "epochs": epochs,
            "hyperparameters": {"epochs": epochs} if epochs else None,  # what it ran with, where every adapter says
            "tuning_data_stats": stats.model_dump(mode="json", exclude_none=True) if stats else None,
            "checkpoints": [c.model_dump(mode="json", exclude_none=True) for c in tuned.checkpoints or []],
            "experiment": job.experiment,  # the Vertex Experiments run with the loss curves
            "gcs_metrics_uri": job.gcs_metrics_uri,
        }
        return JobResult(
            model=tuned.endpoint or tuned.model,
            artifact=tuned.model,
            trained_tokens=billable * epochs if billable and epochs else None,  # Vertex bills tokens × epochs
            deployment_hint=f"Vertex deployed {tuned.model} to {tuned.endpoint}; call it with generateContent",
            extra={k: v for k, v in extra.items() if v is not None},
        )

    def predict(self, model: str, messages: list[dict[str, Any]]) -> str:
        """One reply from a tuned endpoint ("projects/…/endpoints/…") or a base model ("gemini-2.5-flash"),
        the chat turned into Gemini contents by the same exporter as the training data."""
        from finetune_hub.data.findings import RecordError
        from finetune_hub.data.vertex_format import to_vertex

        try:
            request, _ = to_vertex({"messages": messages})
        except RecordError as exc:
            raise DataError(f"these messages cannot be sent to Vertex: {exc.message}") from None
        system = request.get("systemInstruction")
        config = types.GenerateContentConfig(system_instruction=system) if system else None
        with translate(f"asking {model}"):
            reply = self.sdk.genai.models.generate_content(model=model, contents=request["contents"], config=config)
        return reply.text or ""
