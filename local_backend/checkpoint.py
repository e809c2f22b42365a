"""Checkpoints that resume exactly: adapter weights, optimizer, scheduler, RNG states and the data position.

The data order is a pure function of the seed (every epoch's micro-batches are planned up front), so the
data position is just the number of optimizer steps done. A checkpoint directory is complete once its
meta.json exists (written last); a run killed mid-save leaves an incomplete one that resume ignores.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import torch

from local_backend.runfiles import CHECKPOINT_PREFIX, RunFiles, now_iso, write_json


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(
    run: RunFiles,
    *,
    step: int,
    peft_model: Any,
    tokenizer: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    history: list[dict[str, Any]],
    metrics: dict[str, float],
    keep: int | None,
    extra: dict[str, Any] | None = None,
) -> Path:
    path = run.checkpoints / f"{CHECKPOINT_PREFIX}{step:06d}"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    peft_model.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),
            "history": history,
            **(extra or {}),
        },
        path / "trainer_state.pt",
    )
    write_json(path / "meta.json", {"step": step, "created_at": now_iso(), "metrics": metrics})
    _prune(run, keep)
    return path


def _prune(run: RunFiles, keep: int | None) -> None:
    if keep is None:
        return
    for old in run.checkpoint_dirs()[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def load(path: Path, *, peft_model: Any, optimizer: torch.optim.Optimizer, scheduler: Any) -> dict[str, Any]:
    """Restore everything `save` wrote into live objects; returns {"step", "history"}. RNG is restored by
    the caller at the moment the next step starts."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(peft_model, weights)
    if getattr(result, "unexpected_keys", None):
        raise RuntimeError(f"{path}: checkpoint does not match the model (unexpected {result.unexpected_keys[:3]})")
    state = torch.load(path / "trainer_state.pt", weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state
