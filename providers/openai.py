"""OpenAI fine-tuning through the `openai` SDK: the reference adapter.

The client comes from the standard environment (OPENAI_API_KEY, OPENAI_BASE_URL, OPENAI_ORG_ID,
OPENAI_PROJECT_ID) or is injected. SDK retries are off: the base class retries once, honouring Retry-After.
Every SDK call runs inside `sdk_errors`, the one place SDK exceptions become the FthError family.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import io
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import openai
from pydantic import BaseModel, ConfigDict, Field

from finetune_hub import data
from finetune_hub.errors import AuthError, FthError, NotFound, ProviderError, http_error, retry_after
from finetune_hub.job import FineTuneJob, JobState, PreparedData
from finetune_hub.records import Capability, Checkpoint, JobEvent, JobResult, JobStatus, Problem

#: metadata keys the adapter sets on every job (the platform allows 16 pairs)
JOB_KEY, IDEMPOTENCY_KEY = "fth_job", "fth_key"


class OpenAISettings(BaseModel):
    """The `providers: {openai: {...}}` block of a spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    integrations: list[dict[str, Any]] = Field(
        default_factory=list, description='passed through, e.g. [{"type": "wandb", "wandb": {"project": "p"}}]'
    )
    metadata: dict[str, str] = Field(default_factory=dict, description="extra metadata pairs for the job")
    request_timeout: float = Field(default=60.0, gt=0, description="seconds before one request gives up")


@contextmanager
def sdk_errors(action: str) -> Iterator[None]:
    """Translate the SDK's exceptions, by class and status code, never by message text."""
    try:
        yield
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") or exc.message
        raise http_error(
            exc.status_code,
            f"{action}: {message} (HTTP {exc.status_code})",
            retry_after=retry_after(exc.response.headers),
        ) from exc
    except openai.APIConnectionError as exc:  # timeouts included
        raise ProviderError(f"{action}: {type(exc).__name__}: {exc}", retryable=True) from exc
    except openai.OpenAIError as exc:
        raise ProviderError(f"{action}: {type(exc).__name__}: {exc}") from exc


def parse_results(text: str) -> list[dict[str, float]]:
    """The results CSV (step, train_loss, valid_loss, ...) as numbers per step; empty cells left out.
    Azure has served this file base64-encoded [B], so that is undone first."""
    if not text.lstrip().startswith("step"):
        with suppress(binascii.Error, UnicodeDecodeError):  # (line breaks and a last newline are base64's too)
            text = base64.b64decode("".join(text.split()), validate=True).decode("utf-8")
    return [
        {k.strip(): number for k, v in row.items() if k and (number := _number(v)) is not None}
        for row in csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    ]


def _number(cell: object) -> float | None:
    try:
        return float(cell) if isinstance(cell, str) and cell.strip() else None
    except ValueError:  # a cell that is not a number says nothing we chart
        return None


def public_url(url: object) -> str:
    """Scheme, host, port and path of a URL: no user:password@ or query, so it is safe to store."""
    parts = urlsplit(str(url))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}".rstrip("/")


def _time(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _numbers(values: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class OpenAIJob(FineTuneJob):
    provider: ClassVar[str] = "openai"
    capabilities: ClassVar[Mapping[Capability, str | None]] = {
        Capability.SFT: None,
        Capability.DPO: None,
        Capability.LORA_RANK: "OpenAI does not say how it trains and exposes no LoRA settings",
        Capability.EPOCHS: None,
        Capability.LEARNING_RATE: "OpenAI takes a learning_rate_multiplier, not an absolute learning rate",
        Capability.LEARNING_RATE_MULTIPLIER: None,
        Capability.BATCH_SIZE: None,
        Capability.SEED: None,
        Capability.VALIDATION: None,
        Capability.EVENTS: None,
        Capability.CHECKPOINTS: None,
        Capability.CANCEL: None,
        Capability.PAUSE: None,
        Capability.PREDICT: None,
        Capability.LOGS: "OpenAI exposes job events, not training logs; `fth logs` prints the events",
    }
    status_map: ClassVar[Mapping[str, JobStatus]] = {
        "validating_files": JobStatus.QUEUED,
        "queued": JobStatus.QUEUED,
        "pending": JobStatus.QUEUED,  # older Azure API versions
        "running": JobStatus.RUNNING,
        "pausing": JobStatus.PAUSED,
        "paused": JobStatus.PAUSED,
        "succeeded": JobStatus.SUCCEEDED,
        "failed": JobStatus.FAILED,
        "cancelled": JobStatus.CANCELLED,
    }
    settings_model: ClassVar[type[BaseModel] | None] = OpenAISettings
    settings: OpenAISettings
    #: files above this size go through the Uploads API in parts (the Files API takes up to 512 MB)
    large_file_bytes: int = 256 * 2**20
    #: hyperparameter limits of the API: spec key → (platform name, highest value)
    limits: ClassVar[Mapping[str, tuple[str, int]]] = {"epochs": ("n_epochs", 50), "batch_size": ("batch_size", 256)}

    # -- connection ----------------------------------------------------------------------------------

    def connect(self) -> Any:
        try:
            return openai.OpenAI(max_retries=0, timeout=self.settings.request_timeout)
        except openai.OpenAIError:
            raise AuthError(
                "no OpenAI credentials found", hint="set OPENAI_API_KEY (and OPENAI_BASE_URL for a proxy or emulator)"
            ) from None

    def account_id(self) -> str:
        client = self.client
        return "|".join(p for p in (public_url(client.base_url), client.organization, client.project) if p)

    # -- before submitting ---------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        spec, hyper = self.spec, self.spec.hyperparameters
        problems = []
        for key, (name, highest) in self.limits.items():
            value = getattr(hyper, key)
            if value is not None and value > highest:
                problems.append(Problem("error", f"hyperparameters.{key}={value}: {name} must be 1 to {highest}"))
        ignored = {
            "lora": (spec.lora, self.capabilities[Capability.LORA_RANK]),
            "hyperparameters.learning_rate": (hyper.learning_rate, "use learning_rate_multiplier"),
            "hyperparameters.max_seq_length": (hyper.max_seq_length, "the platform sets the context length"),
            "hyperparameters.warmup_ratio": (hyper.warmup_ratio, "the platform sets the schedule"),
            "hyperparameters.beta": (hyper.beta if spec.method == "sft" else None, "beta applies to DPO only"),
        }
        for key, (value, why) in ignored.items():
            if value is not None:
                problems.append(Problem("warning", f"{key} is ignored on {self.provider}: {why}"))
        if len(self.settings.metadata) > 14:
            problems.append(Problem("error", f"providers.{self.provider}.metadata: at most 14 pairs (2 are fth's)"))
        for i, item in enumerate(self.settings.integrations):
            if item.get("type") != "wandb" or not item.get("wandb", {}).get("project"):
                msg = f"providers.{self.provider}.integrations[{i}]: only Weights & Biases is supported"
                problems.append(Problem("error", msg, '{"type": "wandb", "wandb": {"project": "..."}}'))
        return problems

    def prepare(self) -> PreparedData:
        files = {}
        with tempfile.TemporaryDirectory(prefix="fth-") as tmp:
            converted, report = self.converted_data(Path(tmp), model=self.base_model())
            for role, out in converted.items():
                files[role] = self.upload_once(out, data.content_hash(out), self._upload, usable=self._usable)
                self._wait_until_processed(files[role])  # retries its own status checks
        return PreparedData(files, report)

    def _usable(self, file_id: str) -> bool:
        """Whether the platform still has the file and did not fail to import it."""
        try:
            found = self._retrieve_file(file_id)
        except NotFound:
            return False
        return found.status != "error"

    def _retrieve_file(self, file_id: str) -> Any:
        with sdk_errors("check the uploaded file"):
            return self.client.files.retrieve(file_id)

    def _upload(self, path: Path) -> str:
        with sdk_errors(f"upload {path.name}"):
            if path.stat().st_size > self.large_file_bytes:
                upload = self.client.uploads.upload_file_chunked(
                    file=path, mime_type="application/jsonl", purpose="fine-tune"
                )
                return str(upload.file.id)
            return str(self.client.files.create(file=path, purpose="fine-tune").id)

    def _wait_until_processed(self, file_id: str) -> None:
        """OpenAI can train on a file as soon as it is uploaded; Azure makes us wait (see the subclass)."""

    # -- the job -------------------------------------------------------------------------------------

    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        if existing := self._find(idempotency_key):
            return existing
        with sdk_errors("create the fine-tuning job"):
            return str(self.client.fine_tuning.jobs.create(**self._create_params(prepared, idempotency_key)).id)

    def _find(self, idempotency_key: str) -> str | None:
        """The job an earlier attempt with this key created, found by the metadata filter."""
        with sdk_errors("look for an earlier submission"):
            for job in self.client.fine_tuning.jobs.list(metadata={IDEMPOTENCY_KEY: idempotency_key}, limit=100):
                if (job.metadata or {}).get(IDEMPOTENCY_KEY) == idempotency_key:
                    return str(job.id)
        return None

    def _create_params(self, prepared: PreparedData, idempotency_key: str) -> dict[str, Any]:
        spec, hyper = self.spec, self.spec.hyperparameters
        kind = {"sft": "supervised", "dpo": "dpo"}[spec.method]
        chosen = {
            "n_epochs": hyper.epochs,
            "batch_size": hyper.batch_size,
            "learning_rate_multiplier": hyper.learning_rate_multiplier,
            "beta": hyper.beta if kind == "dpo" else None,
        }
        ours = {IDEMPOTENCY_KEY: idempotency_key} | ({JOB_KEY: self.local_id} if self.local_id else {})
        params: dict[str, Any] = {
            "model": self.base_model(),
            "training_file": prepared.files["train"],
            "method": {"type": kind, kind: {"hyperparameters": {k: v for k, v in chosen.items() if v is not None}}},
            "metadata": {**self.settings.metadata, **ours},
            "validation_file": prepared.files.get("validation"),
            "suffix": spec.suffix,
            "seed": spec.seed,
            "integrations": self.settings.integrations or None,
        }
        return {k: v for k, v in params.items() if v is not None}

    def _state(self, job: Any, progress: float | None = None) -> JobState:
        error = job.error.message if job.error is not None and job.error.message else None
        if error and job.error.code:
            error = f"{job.error.code}: {error}"
        return JobState(self.map_status(job.status), job.status, error=error, progress=progress)

    def _job(self) -> Any:
        def retrieve() -> Any:
            with sdk_errors("get the job"):
                return self.client.fine_tuning.jobs.retrieve(self.remote_id)

        return self.fetched("job", retrieve)

    def refresh(self) -> JobState:
        job = self._job()
        return self._state(job, self._progress() if job.status == "running" else None)

    def _events_page(self) -> Any:
        """The newest events (newest first; iterating goes on to older pages), shared by progress and events."""

        def newest() -> Any:
            with sdk_errors("list the job's events"):
                return self.client.fine_tuning.jobs.list_events(self.remote_id, limit=100)

        return self.fetched("events", newest)

    def _progress(self) -> float | None:
        """Steps done out of all steps, from the newest metrics event (they carry `step` and `total_steps`).
        Progress is a nicety: a transient failure here leaves it unknown rather than failing the refresh."""
        try:
            newest = self._events_page().data
        except ProviderError as exc:
            if exc.retryable:
                return None
            raise
        for event in newest:
            details = event.data if isinstance(event.data, dict) else {}
            if details.get("total_steps"):
                return min(1.0, float(details.get("step", 0)) / float(details["total_steps"]))
        return None

    def cancel(self) -> JobState:
        with sdk_errors("cancel the job"):
            return self._state(self.client.fine_tuning.jobs.cancel(self.remote_id))

    def pause(self) -> JobState:
        with sdk_errors("pause the job"):
            return self._state(self.client.fine_tuning.jobs.pause(self.remote_id))

    def resume(self) -> JobState:
        with sdk_errors("resume the job"):
            return self._state(self.client.fine_tuning.jobs.resume(self.remote_id))

    def events(self, since: dt.datetime | None = None) -> list[JobEvent]:
        found = []
        with sdk_errors("list the job's events"):
            for event in self._events_page():  # newest first
                at = _time(event.created_at)
                if since is not None and at <= since:
                    break
                details = event.data if isinstance(event.data, dict) else {}
                kind = event.type or "message"
                found.append(JobEvent(at, event.message, event.level, kind, _numbers(details), event.id))
        return found[::-1]

    def checkpoints(self) -> list[Checkpoint]:
        with sdk_errors("list the job's checkpoints"):
            found = [
                Checkpoint(
                    id=c.id,
                    step=c.step_number,
                    created_at=_time(c.created_at),
                    location=c.fine_tuned_model_checkpoint,
                    metrics=_numbers(c.metrics.model_dump()),
                )
                for c in self.client.fine_tuning.jobs.checkpoints.list(self.remote_id, limit=100)
            ]
        return sorted(found, key=lambda c: c.step or 0)

    def result(self) -> JobResult:
        job = self._job()
        if job.status != "succeeded":
            raise self.no_result_yet(job.status)
        extra: dict[str, Any] = {"result_files": list(job.result_files)}
        try:
            with sdk_errors("read the results file"):
                history = parse_results(self.client.files.content(job.result_files[0]).text) if job.result_files else []
        except FthError as exc:  # (deleted, or a key without Files read): the model is the result that matters
            if exc.retryable:
                raise
            status = f" (HTTP {exc.status_code})" if exc.status_code else ""  # (not the message: it may quote a key)
            history, extra["results_unreadable"] = [], f"could not read the results file: {type(exc).__name__}{status}"
        final: dict[str, float] = {}
        for row in history:
            final.update(row)  # each metric's last reported value (validation is not reported every step)
        # `hyperparameters` is only returned for supervised jobs; a DPO job's are under method.dpo
        method = getattr(job.method, job.method.type, None) if job.method else None
        used = job.hyperparameters or getattr(method, "hyperparameters", None)
        extra["hyperparameters"] = used.model_dump() if used is not None else {}
        return JobResult(
            model=job.fine_tuned_model,
            trained_tokens=job.trained_tokens,
            metrics=final,
            history=history,
            deployment_hint=self._deployment_hint(job),
            extra=extra,
        )

    def _deployment_hint(self, job: Any) -> str | None:
        if not job.fine_tuned_model:
            return None
        return f"no deployment step: call chat completions with model={job.fine_tuned_model}"

    def predict(self, model: str, messages: list[dict[str, Any]]) -> str:
        with sdk_errors(f"chat completion with {model}"):
            reply = self.client.chat.completions.create(model=model, messages=messages)  # type: ignore[arg-type]
        return reply.choices[0].message.content or ""
