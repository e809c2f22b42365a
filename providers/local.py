"""`local`: fine-tune on this machine's GPUs (or CPU) with the project's own trainer, as a tracked job.

The "platform" is `LocalRunner`: a directory of runs under FTH_HOME/local. `submit` starts the trainer
(`python -m local_backend.train`, or torchrun for several GPUs) as a detached process in its own session,
so `fth submit` returns at once and the job outlives the terminal. Everything after that is read from
the files the trainer keeps in its run directory (see local_backend/runfiles.py): status, events (loss,
tokens/s, ETA), checkpoints and the summary. Cancel and pause are requests the trainer honours at the
next step (it checkpoints first); a run that was killed, paused or cancelled resumes from its newest
checkpoint with `resume()`. Imports no torch: the trainer runs in its own process.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import importlib.metadata
import importlib.util
import tempfile
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from finetune_hub.errors import (
    AuthError,
    ConfigError,
    DataError,
    FthError,
    InvalidRequest,
    MissingDependency,
    NotFound,
    ProviderError,
    QuotaError,
)
from finetune_hub.job import FineTuneJob, JobState, PreparedData
from finetune_hub.records import Capability, Checkpoint, JobEvent, JobResult, JobStatus, Problem
from local_backend import config as train_config
from local_backend import runfiles
from local_backend.config import written_as_path
from local_backend.data import DataError as TrainDataError
from local_backend.data import read_chat_jsonl, template_text
from providers.local_runs import DIED, LaunchFailed, LocalRunner, RunNotFound
from providers.trainer_values import learning_rate_warnings, trainer_values


class LocalSettings(BaseModel):
    """`providers: {local: {...}}` in the spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpus: int = Field(default=1, ge=1, le=64, description="processes (GPUs) to train on; >1 launches torchrun")
    packing: bool = True
    # tokens per packed micro-batch (fixed-size rows: best throughput); named so the spec's credential guard,
    # which refuses keys containing "token", lets it through
    packed_length: int | None = Field(default=None, ge=16)
    grad_accumulation: int = Field(default=1, ge=1)
    save_steps: int | None = Field(default=50, ge=1)
    eval_steps: int | None = Field(default=None, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(default_factory=list)
    merge: bool = False
    runs_dir: str | None = None  # default: $FTH_HOME/local
    python: str | None = None  # interpreter with the `local` extra; default: this one
    trainer: dict[str, Any] = Field(default_factory=dict, description="any other local_backend TrainConfig key")


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    """The one place OS-level failures become finetune-hub errors (by exception class and errno)."""
    try:
        yield
    except FthError:
        raise
    except PermissionError as exc:
        raise AuthError(f"local runs: permission denied ({exc.filename or exc.strerror})", status_code=403) from None
    except FileNotFoundError as exc:
        raise NotFound(f"local runs: {exc.strerror or exc} ({exc.filename})", status_code=404) from None
    except LaunchFailed as exc:
        raise ProviderError(
            str(exc), hint="set providers.local.python to an interpreter with the local extra"
        ) from None
    except runfiles.DamagedFile as exc:  # files are replaced whole, so waiting will not mend it
        raise ProviderError(
            f"local runs: {exc}", hint="a running trainer rewrites it at its next step; `fth logs` shows the run"
        ) from None
    except (TimeoutError, BlockingIOError, InterruptedError, ConnectionError) as exc:
        raise ProviderError(f"local runs: transient error ({type(exc).__name__}: {exc})", retryable=True) from None
    except OSError as exc:
        if exc.errno in (errno.EDQUOT, errno.ENOSPC):
            raise QuotaError(f"local runs: {exc.strerror} under the runs directory", hint="free disk space") from None
        retryable = exc.errno in (errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ETIMEDOUT)
        raise ProviderError(f"local runs: {exc.strerror or exc}", retryable=retryable) from None


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value)


class LocalJob(FineTuneJob):
    provider = "local"
    settings_model = LocalSettings
    log_poll_seconds: ClassVar[float] = 0.5
    capabilities: ClassVar[Mapping[Capability, str | None]] = {
        Capability.SFT: None,
        Capability.DPO: "the local trainer does supervised fine-tuning only",
        Capability.LORA_RANK: None,
        Capability.EPOCHS: None,
        Capability.LEARNING_RATE: None,
        Capability.LEARNING_RATE_MULTIPLIER: None,  # scales the local default learning rate, 2e-4
        Capability.BATCH_SIZE: None,
        Capability.SEED: None,
        Capability.VALIDATION: None,
        Capability.EVENTS: None,
        Capability.CHECKPOINTS: None,
        Capability.CANCEL: None,
        Capability.PAUSE: None,
        Capability.PREDICT: None,
        Capability.LOGS: None,
    }
    status_map: ClassVar[Mapping[str, JobStatus]] = {
        runfiles.QUEUED: JobStatus.QUEUED,
        runfiles.RUNNING: JobStatus.RUNNING,
        "pausing": JobStatus.RUNNING,
        runfiles.PAUSED: JobStatus.PAUSED,
        "cancelling": JobStatus.CANCELLING,
        runfiles.SUCCEEDED: JobStatus.SUCCEEDED,
        runfiles.FAILED: JobStatus.FAILED,
        DIED: JobStatus.FAILED,
        runfiles.CANCELLED: JobStatus.CANCELLED,
    }

    # -- setup ---------------------------------------------------------------------------------------

    def connect(self) -> LocalRunner:
        missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependency(
                f"the local trainer needs {', '.join(missing)}", hint="pip install 'finetune-hub[local]'"
            )
        from finetune_hub.store import fth_home

        return LocalRunner(
            Path(self.settings.runs_dir).expanduser() if self.settings.runs_dir else fth_home() / "local"
        )

    def account_id(self) -> str:
        return "local:" + str(self.settings.runs_dir or "default")

    def train_config(self, files: dict[str, str], output_dir: str = "<run directory>") -> train_config.TrainConfig:
        """The spec, mapped onto the trainer's config (what `submit` sends)."""
        spec, s = self.spec, self.settings
        model = self.base_model()
        if Path(model).expanduser().is_dir():  # a local model: absolute, since the trainer runs elsewhere
            model = str(Path(model).expanduser().resolve())
        values = trainer_values(spec, model) | {
            "train_file": files["train"], "validation_file": files.get("validation"), "output_dir": output_dir,
            "packing": s.packing, "tokens_per_batch": s.packed_length, "grad_accumulation": s.grad_accumulation,
            "save_steps": s.save_steps, "eval_steps": s.eval_steps, "max_steps": s.max_steps,
            "report_to": list(s.report_to), "merge": s.merge, "run_name": spec.name,
        }  # fmt: skip
        values.update(s.trainer)
        if (template := values.get("chat_template")) and isinstance(template, str):  # the trainer runs in its run
            try:  # folder, where a relative path means nothing: it gets the text (a path is the spec folder's)
                values["chat_template"] = template_text(template, spec.source_file.parent if spec.source_file else None)
            except TrainDataError as exc:
                raise ConfigError(
                    f"providers.local.trainer.{exc}", hint="a path is relative to the spec's folder"
                ) from None
        try:
            return train_config.TrainConfig.from_dict(values)
        except (train_config.ConfigError, TypeError) as exc:
            raise ConfigError(f"spec → local trainer: {exc}", hint="see docs/local.md for the settings") from None

    # -- before submitting -----------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        problems: list[Problem] = []
        if self.spec.method != "sft":
            problems.append(Problem("error", f"method '{self.spec.method}': {self.capabilities[Capability.DPO]}"))
        runs = self.settings.runs_dir
        if runs is not None and not Path(runs).expanduser().is_absolute():  # checked at submit: stored jobs still open
            why = f"providers.local.runs_dir '{runs}' is relative: give an absolute path"
            problems.append(Problem("error", why, "every later fth command finds the run there, from any folder"))
        try:
            cfg = self.train_config({"train": "train.jsonl", "validation": "validation.jsonl"})
        except ConfigError as exc:
            return [*problems, Problem("error", exc.message, exc.hint)]
        model = cfg.model
        if not Path(model).expanduser().exists():
            if written_as_path(model) or model.count("/") > 1:  # a path, not a Hub id (one slash at most)
                problems.append(Problem("error", f"base model '{model}' does not exist", "give a folder or a Hub id"))
            else:
                hub = f"base model '{model}' is not a local directory: it will be downloaded from the Hugging Face Hub"
                problems.append(Problem("warning", hub + " (needs network, and a login for gated models)"))
        if cfg.attention == "fa4" and not _installed("flash-attn-4"):  # (FA2 has the same top-level package)
            problems.append(Problem("error", "trainer.attention 'fa4' needs flash-attn-4", "pip install flash-attn-4"))
        if cfg.quantize != "none" and importlib.util.find_spec("bitsandbytes") is None:
            need = f"lora.quantize '{cfg.quantize}' (QLoRA) needs bitsandbytes (on a CPU: bitsandbytes >= 0.48)"
            problems.append(Problem("error", need, "pip install 'finetune-hub[qlora]', or set lora.quantize: none"))
        problems += [Problem("warning", w) for w in learning_rate_warnings(self.spec)]
        return problems

    def prepare(self) -> PreparedData:
        from finetune_hub import data

        files = {}
        with tempfile.TemporaryDirectory(prefix="fth-local-") as tmp:
            converted, report = self.converted_data(Path(tmp))
            for out in converted.values():  # what the trainer will read, checked before storing any
                try:
                    sum(1 for _ in read_chat_jsonl(out))
                except TrainDataError as exc:
                    raise DataError(str(exc), hint="nothing was started; fix the file and submit again") from None
            for role, path in converted.items():
                digest = data.content_hash(path)
                with _translate():
                    store = functools.partial(self._store, digest=digest)
                    files[role] = self.upload_once(path, digest, store, usable=lambda p: Path(p).is_file())
        return PreparedData(files=files, report=report)

    def _store(self, path: Path, *, digest: str) -> str:
        return str(self.client.store_data(path, digest))

    def submit(self, prepared: PreparedData, idempotency_key: str) -> str:
        cfg = self.train_config(prepared.files)
        with _translate():
            return str(self.client.create(idempotency_key, cfg.to_dict(), gpus=self.settings.gpus,
                                          python=self.settings.python))  # fmt: skip

    # -- after submitting ------------------------------------------------------------------------------

    def _state(self, status: dict[str, Any]) -> JobState:
        native = str(status.get("state"))
        total = status.get("total_steps")
        progress = min(1.0, status.get("step", 0) / total) if total else None
        detail = status.get("phase")
        return JobState(self.map_status(native), native, error=status.get("error"), progress=progress, detail=detail)

    def refresh(self) -> JobState:
        with _translate():
            return self._state(self.client.state(self.remote_id))

    def events(self, since: datetime | None = None) -> list[JobEvent]:
        with _translate():
            raw = self.client.events(self.remote_id)
        kinds = {"metrics": "metrics", "status": "status"}
        out = [
            JobEvent(time=_time(e["time"]), message=e["message"], level=e.get("level", "info"),
                     kind=kinds.get(e.get("kind", ""), "message"), data=e.get("data", {}), id=f"{self.remote_id}:{n}")
            for n, e in enumerate(raw)
        ]  # fmt: skip
        # By position from the first one after `since`: a resumed run's clock may have stepped back, and its
        # events come after the earlier ones whatever their times say (the store skips ids it has).
        start = next((n for n, e in enumerate(out) if since is None or e.time > since), len(out))
        return out[start:]

    def checkpoints(self) -> list[Checkpoint]:
        with _translate():
            raw = self.client.checkpoints(self.remote_id)
        return [
            Checkpoint(id=Path(c["path"]).name, step=c["step"], created_at=_time(c["created_at"]), location=c["path"],
                       metrics={k: float(v) for k, v in c.get("metrics", {}).items() if isinstance(v, int | float)})
            for c in raw
        ]  # fmt: skip

    def cancel(self) -> JobState:
        with _translate():
            try:
                return self._state(self.client.request(self.remote_id, "cancel"))
            except RunNotFound:  # its folder was deleted: nothing is left to stop, and the job can be cleared
                if not (self.client.root / "runs").is_dir():  # the whole runs folder: maybe a drive not mounted
                    raise
                gone = f"its run folder {self.client.root / 'runs' / str(self.remote_id)} is gone"
                return JobState(JobStatus.CANCELLED, runfiles.CANCELLED, error=gone)

    def pause(self) -> JobState:
        with _translate():
            return self._state(self.client.request(self.remote_id, "pause"))

    def resume(self) -> JobState:
        """Start the trainer again from the newest checkpoint (after a pause, cancel, crash or kill)."""
        with _translate(), self.client.launching(self.remote_id):
            state = self.client.state(self.remote_id)
            if state["state"] in (runfiles.QUEUED, runfiles.RUNNING):
                return self._state(state)
            stopping = state["state"] in ("pausing", "cancelling") or not self._exited(seconds=15)
            if stopping:  # its process still runs: a second one would share the folder (and the GPU's memory)
                raise InvalidRequest(
                    f"local run {self.remote_id} is {state['state']}: its trainer has not stopped yet",
                    status_code=409,
                    hint="resume it once `fth status` shows it paused or cancelled",
                )
            if state["state"] == runfiles.SUCCEEDED:
                raise InvalidRequest(f"local run {self.remote_id} already finished", status_code=409)
            self.client.launch(self.remote_id, resume="auto")
            return self._state(self.client.state(self.remote_id))

    def _exited(self, seconds: float) -> bool:
        """Whether the run's process has exited, waiting up to `seconds` (a paused trainer writes "paused" and
        then releases the GPU and exits)."""
        deadline = time.monotonic() + seconds
        while self.client.process_alive(self.remote_id):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def result(self) -> JobResult:
        with _translate():
            summary = self.client.summary(self.remote_id)
        if not summary or summary.get("status") != runfiles.SUCCEEDED:
            raise self.no_result_yet(str(self.client.state(self.remote_id).get("state")))
        metrics = {
            k: float(summary[k]) for k in ("train_loss", "val_loss", "initial_val_loss") if summary.get(k) is not None
        }
        history = [
            {k: float(v) for k, v in h.items() if isinstance(v, int | float)} for h in summary.get("history", [])
        ]
        return JobResult(
            model=summary.get("adapter"), artifact=summary.get("merged") or summary.get("adapter"),
            trained_tokens=summary.get("trained_tokens"), billable_seconds=summary.get("runtime_s"), metrics=metrics,
            history=history, deployment_hint="PeftModel.from_pretrained(base_model, adapter) in transformers, or the "
            "merged directory (providers.local.merge: true) anywhere a Hugging Face model loads",
            extra={"run_dir": str(Path(summary["adapter"]).parent), "merge_check": summary.get("merge_check")},
        )  # fmt: skip

    def predict(self, model: str, messages: list[dict[str, Any]]) -> str:
        """Greedy reply from the base model plus, when `model` is an adapter directory, that adapter."""
        from local_backend.infer import generate

        adapter = model if (Path(model) / "adapter_config.json").exists() else None
        return generate(self.base_model() if adapter else model, messages, adapter=adapter)

    def logs(self, follow: bool = False) -> Iterator[str]:
        """The trainer's output; with `follow`, each new line as it is written, until the run ends."""
        offset = 0
        while True:
            with _translate():
                status = self.refresh().status if follow else None  # looked at first: the read then has it all
                done = status is None or status.terminal or status is JobStatus.PAUSED  # paused: no process writes
                lines, offset = self.client.log_lines(self.remote_id, offset, complete=not done)
            yield from lines
            if done:
                return
            time.sleep(self.log_poll_seconds)
