"""Plain records shared by every adapter, the store and the reports."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStatus(enum.StrEnum):
    """The one lifecycle every platform's native states map onto."""

    CREATED = "created"  # recorded locally, not yet accepted by the platform
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Capability(enum.StrEnum):
    SFT = "sft"
    DPO = "dpo"
    LORA_RANK = "lora_rank"
    EPOCHS = "epochs"
    LEARNING_RATE = "learning_rate"
    LEARNING_RATE_MULTIPLIER = "learning_rate_multiplier"
    BATCH_SIZE = "batch_size"
    SEED = "seed"
    VALIDATION = "validation"
    EVENTS = "events"
    CHECKPOINTS = "checkpoints"
    CANCEL = "cancel"
    PAUSE = "pause"
    PREDICT = "predict"
    LOGS = "logs"


@dataclass(frozen=True)
class Problem:
    """Something `check` found before any network call."""

    severity: str  # "error" | "warning"
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class JobEvent:
    time: datetime
    message: str
    level: str = "info"
    kind: str = "message"  # "message" | "metrics" | "status"
    data: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Checkpoint:
    id: str
    step: int | None = None
    created_at: datetime | None = None
    location: str | None = None  # model id, URI or path the checkpoint can be used from
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    model: str | None = None  # fine-tuned model id, endpoint or adapter path
    artifact: str | None = None  # where the weights are, when the platform exposes them
    trained_tokens: int | None = None
    billable_seconds: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # final values
    history: list[dict[str, float]] = field(default_factory=list)  # per-step metrics
    deployment_hint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CostEstimate:
    provider: str
    model: str
    quantity: float  # billed units (tokens, hours, instance-hours)
    unit: str
    unit_price_usd: float
    total_usd: float
    as_of: str
    source: str
    verified: bool
    assumptions: list[str] = field(default_factory=list)
    # what the quantity was worked out from (None where it does not apply); filled by finetune_hub.cost
    epochs: int | None = None
    billed_tokens: int | None = None  # tokens the platform bills (epochs included), or processes when time-billed
    runtime_hours: float | None = None  # predicted runtime on time-billed platforms
    hosting_usd_per_hour: float | None = None  # what keeping the fine-tuned model deployed costs, where it does


def to_plain(obj: Any) -> Any:
    """Dataclasses, enums and datetimes as JSON-ready values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


def to_json(data: Any) -> str:
    """`data` as strict JSON text (what `--json` prints and reports hold): NaN and infinities (a diverged loss)
    become null, since JSON has no such numbers. (The store keeps them: a final NaN loss stays the final loss.)"""
    return json.dumps(_finite(to_plain(data)), indent=2, default=str, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
