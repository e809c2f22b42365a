"""`fth compare`: jobs side by side — platform, model, status, time, cost, losses and their curves — and,
with held-out prompts, every fine-tuned model's answers scored by the same metrics.

Everything except the held-out answers comes from the local job store; answers come from each adapter's
`predict`. The result is a plain `Comparison` that `finetune_hub.report` renders as a table, HTML,
Markdown or JSON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from finetune_hub.errors import AuthError, ConfigError, FthError
from finetune_hub.records import Capability, JobEvent, JobStatus, utcnow

if TYPE_CHECKING:
    from finetune_hub.evaluation import Prompt, Scorer
    from finetune_hub.job import FineTuneJob
    from finetune_hub.store import JobRecord, JobStore

# Names platforms and trainers use for the same curve (OpenAI, HF Trainer, our local backend, Vertex).
TRAIN_LOSS_KEYS = ("train_loss", "loss", "training_loss")
VALID_LOSS_KEYS = ("valid_loss", "eval_loss", "validation_loss", "val_loss", "full_valid_loss")
STEP_KEYS = ("step", "global_step", "step_number")

Point = tuple[float, float]


@dataclass(frozen=True)
class JobSummary:
    id: str
    provider: str
    name: str
    base_model: str
    model: str | None  # the fine-tuned model, once there is one
    status: str
    created_at: str
    wall_seconds: float | None  # recorded → finished, as the store saw it
    running_seconds: float | None  # first seen running → finished
    estimated_usd: float | None
    actual_usd: float | None
    final: dict[str, float]  # train_loss / valid_loss at the end
    curves: dict[str, list[Point]]  # "train_loss" / "valid_loss" → (step, value)
    error: str | None = None


@dataclass(frozen=True)
class Answer:
    line: int  # the held-out file's line
    prediction: str | None
    scores: dict[str, float]
    error: str | None = None


@dataclass(frozen=True)
class Evaluation:
    label: str  # the job id, or "base <model>" for a base model
    job_id: str
    provider: str
    model: str
    is_base: bool
    scores: dict[str, float]  # metric → mean over answered prompts
    answered: int
    failed: int
    answers: list[Answer] = field(default_factory=list)
    error: str | None = None  # why the model could not be asked at all


@dataclass(frozen=True)
class Comparison:
    created_at: str
    jobs: list[JobSummary]
    metrics: list[str] = field(default_factory=list)
    eval_file: str | None = None
    prompts: list[dict[str, Any]] = field(default_factory=list)  # line, prompt text, reference
    evaluations: list[Evaluation] = field(default_factory=list)

    def cost_of(self, job_id: str) -> float | None:
        """The job's actual cost where known, else its estimate."""
        job = next(j for j in self.jobs if j.id == job_id)
        return job.actual_usd if job.actual_usd is not None else job.estimated_usd


# -- from the store ----------------------------------------------------------------------------------


def _first(row: Mapping[str, Any], keys: Sequence[str]) -> float | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def curves(history: Sequence[Mapping[str, Any]]) -> dict[str, list[Point]]:
    """Train and validation loss curves from per-step metric rows (missing steps count from 1)."""
    found: dict[str, list[Point]] = {"train_loss": [], "valid_loss": []}
    for index, row in enumerate(history, start=1):
        found_step = _first(row, STEP_KEYS)
        step = float(index) if found_step is None else found_step  # step 0 (a loss before training) is a step
        for name, keys in (("train_loss", TRAIN_LOSS_KEYS), ("valid_loss", VALID_LOSS_KEYS)):
            if (value := _first(row, keys)) is not None:
                found[name].append((step, value))
    return {name: sorted(points) for name, points in found.items() if points}


def _metric_rows(events: list[JobEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.kind == "metrics" and e.data]


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def summarize(record: JobRecord, store: JobStore) -> JobSummary:
    """One job as the store knows it: costs, times from the status history, losses from the result
    (per-step history, else the metric events the platform sent)."""
    from finetune_hub.spec import FineTuneSpec

    history = store.history(record.id)
    finished = next((at for status, _, at in history if status.terminal), None)
    running = next((at for status, _, at in history if status is JobStatus.RUNNING), None)
    result = record.result or {}
    found = curves(result.get("history") or [])
    # a curve the history lacks (the local trainer's validation loss) comes from the events
    if not {"train_loss", "valid_loss"} <= found.keys():
        found = curves(_metric_rows([e for _, e in store.events(record.id)])) | found
    final: dict[str, float] = {}
    for name, keys in (("train_loss", TRAIN_LOSS_KEYS), ("valid_loss", VALID_LOSS_KEYS)):
        value = _first(result.get("metrics") or {}, keys)
        if value is None and found.get(name):
            value = found[name][-1][1]
        if value is not None:
            final[name] = value
    try:
        base_model = FineTuneSpec.model_validate(record.spec).base_model_for(record.provider)
    except (FthError, ValueError):
        base_model = "?"
    return JobSummary(
        id=record.id,
        provider=record.provider,
        name=record.name,
        base_model=base_model,
        model=record.model,
        status=record.status.value,
        created_at=record.created_at,
        wall_seconds=_seconds_between(record.created_at, finished),
        running_seconds=_seconds_between(running, finished),
        estimated_usd=record.estimated_usd,
        actual_usd=record.actual_usd,
        final=final,
        curves=found,
        error=record.error,
    )


# -- held-out answers --------------------------------------------------------------------------------


def evaluate(
    job: FineTuneJob,
    model: str,
    prompts: Sequence[Prompt],
    scorers: Mapping[str, Scorer],
    *,
    is_base: bool = False,
    deployment: str | None = None,
) -> Evaluation:
    """Ask `model` (through `deployment`, where the platform answers only through one) every prompt through the
    job's adapter and score each answer against its reference."""
    job_id = job.local_id or "?"
    label = f"base {model}" if is_base else job_id
    reason = None
    if not job.supports(Capability.PREDICT):
        reason = str(job.unsupported(Capability.PREDICT))
    elif job.answers_through_deployments and deployment is None:  # every prompt would be a 404
        reason = f"not asked: {job.provider} answers through deployments, " + (
            "and base models take none here" if is_base
            else f"deploy {model} (`fth status {job_id}` says how), then --model {job_id}=<deployment>"
        )  # fmt: skip
    if reason is not None:
        return Evaluation(label, job_id, job.provider, model, is_base, {}, 0, len(prompts), error=reason)
    model = deployment or model
    answers: list[Answer] = []
    stopped: str | None = None  # why the rest are not asked
    for prompt in prompts:
        if stopped is not None:
            answers.append(Answer(prompt.line, None, {}, error=stopped))
            continue
        try:
            prediction = job.retrying(lambda p=prompt: job.predict(model, p.messages))  # type: ignore[misc]
        except FthError as exc:
            answers.append(Answer(prompt.line, None, {}, error=exc.message))
            # refused credentials, or a platform still out of reach after the retries: every later prompt would
            # meet the same (and wait as long); one that refuses a single prompt does not stop the others
            if isinstance(exc, AuthError) or exc.retryable:
                stopped = f"not asked: {exc.message}"
            continue
        scores = {name: score(prediction, prompt.reference) for name, score in scorers.items()}
        answers.append(Answer(prompt.line, prediction, scores))
    scored = [a for a in answers if a.error is None]
    means = {name: sum(a.scores[name] for a in scored) / len(scored) for name in scorers} if scored else {}
    errors = {a.error for a in answers if a.error}
    error = f"{len(answers) - len(scored)} prompt(s) failed: " + "; ".join(sorted(errors))[:300] if errors else None
    return Evaluation(
        label, job_id, job.provider, model, is_base, means, len(scored), len(answers) - len(scored), answers, error
    )


def _prompt_text(prompt: Prompt) -> str:
    last_user = next((m for m in reversed(prompt.messages) if m.get("role") == "user"), None)
    content = last_user.get("content") if last_user else None
    return content if isinstance(content, str) else str(content)


# -- the comparison ----------------------------------------------------------------------------------


def compare(
    refs: Sequence[str],
    *,
    store: JobStore | None = None,
    eval_file: Path | None = None,
    metrics: Sequence[str] = ("exact", "rouge-l"),
    include_base: bool = False,
    limit: int | None = None,
    clients: Mapping[str, Any] | None = None,
    models: Mapping[str, str] | None = None,
) -> Comparison:
    """Summaries of the jobs `refs`; with `eval_file`, each fine-tuned model (and, with `include_base`, each
    distinct base model) answers the held-out prompts, scored by `metrics`. `models` names what to ask for a job
    (job ref → a deployment, as Azure needs, or a checkpoint) instead of its fine-tuned model id. `clients`
    injects an SDK client per provider (for emulators); otherwise adapters connect as usual."""
    from finetune_hub import api
    from finetune_hub.evaluation import load_prompts, scorer
    from finetune_hub.store import JobStore

    store = store or JobStore()
    records = list({r.id: r for r in (store.get(ref) for ref in refs)}.values())
    summaries = [summarize(r, store) for r in records]
    if eval_file is None:
        return Comparison(utcnow().isoformat(), summaries)
    asked = {store.get(ref).id: name for ref, name in (models or {}).items()}
    if stray := sorted(set(asked) - {r.id for r in records}):
        raise ConfigError(f"--model names job(s) not compared here: {', '.join(stray)}", hint="compare them too")
    prompts = load_prompts(eval_file, limit)
    scorers = {name: scorer(name) for name in metrics}  # a typo fails here, before any model is asked
    evaluations: list[Evaluation] = []
    bases_done: set[tuple[str, str]] = set()
    for record, summary in zip(records, summaries, strict=True):
        tuned = record.status is JobStatus.SUCCEEDED and bool(record.model)
        base = include_base and (record.provider, summary.base_model) not in bases_done
        if not tuned:
            why = f"no fine-tuned model (status {record.status.value})"
            evaluations.append(
                Evaluation(record.id, record.id, record.provider, "—", False, {}, 0, len(prompts), error=why)
            )
        if not (tuned or base):
            continue
        job = api.open_job(record.id, store=store, client=(clients or {}).get(record.provider))
        if tuned:
            evaluations.append(evaluate(job, str(record.model), prompts, scorers, deployment=asked.get(record.id)))
        if base:
            bases_done.add((record.provider, summary.base_model))
            evaluations.append(evaluate(job, summary.base_model, prompts, scorers, is_base=True))
    shown = [{"line": p.line, "prompt": _prompt_text(p), "reference": p.reference} for p in prompts]
    return Comparison(utcnow().isoformat(), summaries, list(metrics), str(eval_file), shown, evaluations)
