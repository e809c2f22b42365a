"""How an emulated OpenAI fine-tuning job moves on the emulator's clock.

validating_files → queued → running (one step every `step_s`, each with a metrics event; a checkpoint at
the end of each epoch, the last three kept) → succeeded with a results CSV and a model name. A training
file with fewer than 10 examples fails validation. Every change is applied at the time it was due, so
events carry deterministic timestamps however late the emulator looks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.emulators.harness import Clock

TERMINAL = ("succeeded", "failed", "cancelled")
RESULT_COLUMNS = ["step", "train_loss", "train_mean_token_accuracy", "valid_loss", "valid_mean_token_accuracy"]


@dataclass
class Job:
    wire: dict[str, Any]  # the job object as the API returns it
    flavor: str  # "openai" | "azure" | "azure-dated": decides how names look
    examples: list[dict[str, Any]]
    steps: int
    entered: float  # clock time the current status began
    step: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: int = 1

    @classmethod
    def create(
        cls, job_id: str, body: dict[str, Any], method: dict[str, Any], flavor: str, examples: list[Any], now: float
    ) -> Job:
        """A new job from a validated create request; "auto" hyperparameters resolved as the platform would."""
        chosen = method.get(method["type"], {}).get("hyperparameters", {})
        epochs = 3 if chosen.get("n_epochs", "auto") == "auto" else chosen["n_epochs"]
        batch = 1 if chosen.get("batch_size", "auto") == "auto" else chosen["batch_size"]
        multiplier = chosen.get("learning_rate_multiplier", "auto")
        resolved = {**chosen, "n_epochs": epochs, "batch_size": batch,
                    "learning_rate_multiplier": 1.8 if multiplier == "auto" else multiplier}  # fmt: skip
        if method["type"] != "supervised":  # the top-level field is "only returned when running supervised jobs"
            method = {**method, method["type"]: {**method.get(method["type"], {}), "hyperparameters": resolved}}
        wire = {
            "id": job_id,
            "object": "fine_tuning.job",
            "created_at": int(now),
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": resolved if method["type"] == "supervised" else None,
            "model": body["model"],
            "organization_id": "org-emulator",
            "result_files": [],
            "seed": body.get("seed", 42),
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "integrations": body.get("integrations") or [],
            "metadata": body.get("metadata"),
            "method": method,
            "estimated_finish": None,
            "suffix": body.get("suffix"),
        }
        if "trainingType" in body:
            wire["trainingType"] = body["trainingType"]
        return cls(wire, flavor, examples, max(1, epochs * math.ceil(len(examples) / batch)), now, epochs=epochs)


class Lifecycle:
    validating_s = 5.0
    queued_s = 5.0
    step_s = 2.0

    def __init__(
        self, clock: Clock, new_id: Callable[..., str], store_file: Callable[[str, bytes, str], dict[str, Any]]
    ) -> None:
        self.clock, self.new_id, self.store_file = clock, new_id, store_file

    def start(self, job: Job) -> None:
        self.event(job, job.entered, f"Created fine-tuning job: {job.wire['id']}")
        self.event(job, job.entered, f"Validating training file: {job.wire['training_file']}")

    def advance(self, job: Job, to: str) -> None:
        """Drive `job` to `to` ("running", "succeeded", "failed"), moving the clock as far as that takes."""
        self.tick(job)
        if to == "failed":
            self.fail(job, self.clock.now(), "server_error", "The job failed due to an internal error.")
            return
        while job.wire["status"] != to:
            if job.wire["status"] in TERMINAL or job.wire["status"] == "paused":
                raise AssertionError(f"job {job.wire['id']} is {job.wire['status']}; it cannot reach {to}")
            self.clock.advance(max(0.0, self._next_change(job) - self.clock.now()))
            self.tick(job)

    def resume(self, job: Job) -> None:
        """Steps already done stay done: the running clock restarts as if they had just finished."""
        now = self.clock.now()
        job.wire["status"], job.entered = "running", now - job.step * self.step_s
        self.event(job, now, "The job was resumed")

    def _next_change(self, job: Job) -> float:
        status = job.wire["status"]
        if status == "validating_files":
            return job.entered + self.validating_s
        if status == "queued":
            return job.entered + self.queued_s
        return job.entered + (job.step + 1) * self.step_s

    def tick(self, job: Job) -> None:
        """Apply every change due by now, each at the time it was due."""
        while job.wire["status"] in ("validating_files", "queued", "running"):
            due = self._next_change(job)
            if due > self.clock.now():
                return
            status = job.wire["status"]
            if status == "validating_files":
                if len(job.examples) < 10:
                    message = f"Training file has {len(job.examples)} example(s), but must have at least 10"
                    self.fail(job, due, "invalid_training_file", message, "training_file")
                    return
                self.enter(job, "queued", due)
            elif status == "queued":
                self.enter(job, "running", due)
            else:
                self._step(job, due)

    def _step(self, job: Job, at: float) -> None:
        job.step += 1
        step, total = job.step, job.steps
        loss = round(0.2 + 1.8 * math.exp(-3 * step / total), 4)
        row = {"step": step, "train_loss": loss, "train_mean_token_accuracy": round(1 - loss / 2.5, 4)}
        if job.wire["validation_file"]:
            row |= {"valid_loss": round(loss * 1.1, 4), "valid_mean_token_accuracy": round(1 - loss / 2.2, 4)}
        job.history.append(row)
        data = {**row, "total_steps": total}
        self.event(job, at, f"Step {step}/{total}: training loss={loss}", kind="metrics", data=data)
        if step % max(1, total // job.epochs) == 0 or step == total:
            self._checkpoint(job, at, row)
        if step == total:
            self._succeed(job, at)

    def _checkpoint(self, job: Job, at: float, row: dict[str, Any]) -> None:
        base = self.model_name(job)
        job.checkpoints.append(
            {
                "id": self.new_id("ftckpt_" if job.flavor == "openai" else "ftchkpt-", width=32),
                "object": "fine_tuning.job.checkpoint",
                "created_at": int(at),
                "fine_tuned_model_checkpoint": f"{base}:ckpt-step-{row['step']}",
                "fine_tuning_job_id": job.wire["id"],
                "step_number": row["step"],
                "metrics": dict(row),
            }
        )
        del job.checkpoints[:-3]  # the platform keeps the last three

    def _succeed(self, job: Job, at: float) -> None:
        out = io.StringIO()
        writer = csv.DictWriter(out, RESULT_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(job.history)
        results = self.store_file("step_metrics.csv", out.getvalue().encode(), "fine-tune-results")
        tokens = sum(len(json.dumps(e)) // 4 for e in job.examples) * job.epochs
        job.wire.update(fine_tuned_model=self.model_name(job), result_files=[results["id"]], trained_tokens=tokens)
        self.enter(job, "succeeded", at)

    def model_name(self, job: Job) -> str:
        if job.flavor == "openai":
            return f"ft:{job.wire['model']}:emulator:{job.wire['suffix'] or ''}:{job.wire['id'][-8:]}"
        return f"{job.wire['model']}.ft-{hashlib.md5(job.wire['id'].encode()).hexdigest()}"

    def fail(self, job: Job, at: float, code: str, message: str, param: str | None = None) -> None:
        job.wire["error"] = {"code": code, "message": message, "param": param}
        self.enter(job, "failed", at)

    def enter(self, job: Job, status: str, at: float) -> None:
        job.wire["status"], job.entered = status, at
        if status in TERMINAL:
            job.wire["finished_at"] = int(at)
        message = {
            "queued": "Files validated, moving job to queued state",
            "running": "Fine-tuning job started",
            "succeeded": "The job has successfully completed",
            "failed": f"The job failed: {(job.wire['error'] or {}).get('message')}",
            "cancelled": "The job was cancelled",
            "paused": "The job was paused",
        }[status]
        self.event(job, at, message, level="error" if status == "failed" else "info")

    def event(
        self, job: Job, at: float, message: str, *, level: str = "info", kind: str = "message", data: Any = None
    ) -> None:
        job.events.append(
            {
                "id": self.new_id("ftevent-"),
                "object": "fine_tuning.job.event",
                "created_at": int(at),
                "level": level,
                "message": message,
                "type": kind,
                "data": data or {},
            }
        )
