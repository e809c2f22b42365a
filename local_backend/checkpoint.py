"""Checkpoints that resume exactly: adapter weights, optimizer, scheduler, RNG states and the data position.

The data order is a pure function of the seed (every epoch's micro-batches are planned up front), so the
data position is just the number of optimizer steps done. A checkpoint directory is complete once its
meta.json exists (written last, after the other files reach the disk); a run killed mid-save leaves an
incomplete one that resume ignores, and one damaged later is skipped for the one before it.
Adapter and optimizer state are saved whole and by parameter name, so a run may resume with or without
FSDP (the step plan fixes the number of processes).
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from local_backend.distributed import shard_like, whole
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


def trainable(peft_model: Any) -> dict[str, torch.nn.Parameter]:
    """The trainable parameters by name, in the model's order (the optimizer's, and old checkpoints')."""
    return {n: p for n, p in peft_model.named_parameters() if p.requires_grad}


def trainable_state(peft_model: Any) -> dict[str, torch.Tensor]:
    """The trainable parameters, whole, by name (sharded ones are gathered: every rank must call this)."""
    return {n: whole(p.detach()) for n, p in trainable(peft_model).items()}


def optimizer_state(peft_model: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state, whole and keyed by parameter name, on the main rank (every rank must call this)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(peft_model, optimizer, options=options)  # type: ignore[no-any-return]


def save(
    run: RunFiles,
    *,
    step: int,
    peft_model: Any,
    adapter: dict[str, torch.Tensor],
    tokenizer: Any,
    optimizer: dict[str, Any],
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
    peft_model.save_pretrained(path, state_dict=adapter)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    torch.save(
        {
            "step": step,
            "optimizer": optimizer,
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(),  # this rank's (the caller adds every rank's); what earlier versions read
            "history": history,
            **(extra or {}),
        },
        path / "trainer_state.pt",
    )
    _sync(path)  # rare and large: worth a sync, so that meta.json never outlives its files in a power cut
    write_json(path / "meta.json", {"step": step, "created_at": now_iso(), "metrics": metrics})
    _prune(run, keep)
    return path


def _sync(folder: Path) -> None:
    for item in [*folder.rglob("*"), folder]:
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class DamagedCheckpoint(Exception):
    """A complete checkpoint whose files cannot be read (damaged after it was written)."""


def _prune(run: RunFiles, keep: int | None) -> None:
    if keep is None:
        return
    for old in run.checkpoint_dirs()[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A checkpoint's adapter weights and trainer state (step, history, RNG, fingerprint, ...), read whole before
    anything is changed, so that a damaged or refused checkpoint leaves the model as it was."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        weights = load_file(str(path / "adapter_model.safetensors"))
        return weights, torch.load(path / "trainer_state.pt", weights_only=False)
    except (SafetensorError, RuntimeError, EOFError, pickle.UnpicklingError, FileNotFoundError) as exc:
        # a cut or emptied file (torch's zip reader raises RuntimeError), or a lost one; not a permission error
        # or an exhausted machine, which would make a sound checkpoint look damaged (and the next save replace it)
        raise DamagedCheckpoint(f"{path.name}: {type(exc).__name__}: {exc}") from exc


def restore(
    path: Path, weights: dict[str, torch.Tensor], state: dict[str, Any], *, peft_model: Any, optimizer: Any,
    scheduler: Any,
) -> None:  # fmt: skip
    """Put what `read` gave into the adapter, optimizer and scheduler; the caller restores the RNG at the moment
    the next step starts."""
    from peft.utils import get_peft_model_state_dict
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    named = trainable(peft_model)
    # the file's names for the live parameters (no embedding-layer lookup, which may ask the Hub)
    params = get_peft_model_state_dict(peft_model, state_dict=named, save_embedding_layers=False)
    # Older checkpoints also hold frozen embedding weights (PEFT saved them when LoRA targets embed_tokens).
    if differ := sorted((params.keys() ^ weights.keys()) - {k for k in weights if ".base_layer." in k}):
        raise RuntimeError(f"{path}: checkpoint does not match the model ({differ[:3]})")
    with torch.no_grad():
        for key, param in params.items():
            param.copy_(shard_like(weights[key], param))
    options = StateDictOptions(full_state_dict=True, strict=False)  # a parameter that never had a gradient has none
    set_optimizer_state_dict(peft_model, optimizer, _by_name(state["optimizer"], list(named)), options=options)
    scheduler.load_state_dict(state["scheduler"])


def _by_name(saved: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Optimizer state keyed by parameter name; checkpoints before 2026-11-27 keyed it by position."""
    if all(isinstance(p, str) for group in saved["param_groups"] for p in group["params"]):
        return saved
    return {
        "state": {names[i]: v for i, v in saved["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in saved["param_groups"]],
    }
