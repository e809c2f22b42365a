"""`report_to` pass-through: the same metrics the run's events.jsonl gets, sent to TensorBoard, W&B or MLflow.

Each integration is imported only when named, and checked before training starts so a missing package
fails in seconds, not after the model has loaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from local_backend.config import ConfigError

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def check_available(names: list[str]) -> None:
    missing = [n for n in names if importlib.util.find_spec(_PACKAGES[n]) is None]
    if missing:
        raise ConfigError(
            f"train config: report_to {missing} needs: pip install {' '.join(_PACKAGES[n] for n in missing)}"
        )


class Reporters:
    """Fan-out of scalar metrics to the configured integrations (main process only)."""

    def __init__(self, names: list[str], *, log_dir: Path, run_name: str, config: dict[str, Any]) -> None:
        check_available(names)
        self._sinks: list[tuple[str, Any]] = []
        for name in names:
            if name == "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self._sinks.append((name, SummaryWriter(log_dir=str(log_dir / "tensorboard"))))
            elif name == "wandb":
                import wandb

                self._sinks.append((name, wandb.init(name=run_name, config=config, reinit=True)))
            elif name == "mlflow":
                import mlflow

                mlflow.start_run(run_name=run_name)
                mlflow.log_params({k: str(v)[:250] for k, v in config.items()})
                self._sinks.append((name, mlflow))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, sink in self._sinks:
            if name == "tensorboard":
                for key, value in metrics.items():
                    sink.add_scalar(key, value, step)
            elif name == "wandb":
                sink.log(metrics, step=step)
            else:
                sink.log_metrics(metrics, step=step)

    def close(self) -> None:
        for name, sink in self._sinks:
            if name == "tensorboard":
                sink.close()
            elif name == "wandb":
                sink.finish()
            else:
                sink.end_run()
        self._sinks = []
