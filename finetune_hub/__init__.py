"""finetune-hub: one dataset and one spec, sent to any fine-tuning platform, compared on cost and results.

The package imports nothing heavy: names below load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "FineTuneSpec": "finetune_hub.spec",
    "FineTuneJob": "finetune_hub.job",
    "JobState": "finetune_hub.job",
    "JobStore": "finetune_hub.store",
    "JobStatus": "finetune_hub.records",
    "JobEvent": "finetune_hub.records",
    "Checkpoint": "finetune_hub.records",
    "JobResult": "finetune_hub.records",
    "CostEstimate": "finetune_hub.records",
    "Capability": "finetune_hub.records",
    "FthError": "finetune_hub.errors",
    "submit": "finetune_hub.api",
    "open_job": "finetune_hub.api",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from finetune_hub.api import open_job, submit
    from finetune_hub.errors import FthError
    from finetune_hub.job import FineTuneJob, JobState
    from finetune_hub.records import Capability, Checkpoint, CostEstimate, JobEvent, JobResult, JobStatus
    from finetune_hub.spec import FineTuneSpec
    from finetune_hub.store import JobStore


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'finetune_hub' has no attribute {name!r}")
