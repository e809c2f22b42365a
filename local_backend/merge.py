"""Merge a LoRA adapter into its base model, save it, and prove the saved model is the trained one.

A merge can go wrong silently (a quantized base, a dtype round trip, a config that reloads differently), so
after saving, the merged model is loaded back from disk and its logits on a few training examples are
compared with those of base + adapter. The merge is done on an unquantized copy of the base.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from local_backend.config import TrainConfig
from local_backend.data import Example


class MergeCheckFailed(RuntimeError):
    """The merged model's logits differ from base + adapter by more than the tolerance."""


def _logits(model: Any, probes: list[Example], device: torch.device) -> list[torch.Tensor]:
    model.eval()
    with torch.no_grad():
        return [model(input_ids=torch.tensor([p.input_ids], device=device)).logits.float().cpu() for p in probes]


def merge_and_verify(
    cfg: TrainConfig,
    adapter_dir: Path,
    out_dir: Path,
    *,
    probes: list[Example],
    device: torch.device,
    dtype: torch.dtype,
    tokenizer: Any,
) -> dict[str, Any]:
    """Merge on an unquantized copy of the base in the training's weight dtype, save, reload, compare logits."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    load = {"dtype": dtype, "trust_remote_code": cfg.trust_remote_code}
    base = AutoModelForCausalLM.from_pretrained(cfg.model, **load).to(device)
    peft_model = PeftModel.from_pretrained(base, str(adapter_dir))
    expected = _logits(peft_model, probes, device)
    merged = peft_model.merge_and_unload()
    merged.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del merged, peft_model, base
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, **load).to(device)
    got = _logits(reloaded, probes, device)
    diff = max(float((a - b).abs().max()) for a, b in zip(expected, got, strict=True))
    scale = max(float(a.abs().max()) for a in expected)
    agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(expected, got, strict=True))
    positions = sum(a.shape[1] for a in expected)
    # bf16 weights round each merged product; fp32 merges are exact to float error.
    tolerance = (5e-2 if dtype == torch.bfloat16 else 1e-4) * max(scale, 1.0)
    check = {"max_abs_diff": diff, "tolerance": tolerance, "top1_agreement": agree / positions, "dtype": str(dtype)}
    if diff > tolerance:
        raise MergeCheckFailed(f"merged model differs from base + adapter: max |Δlogit| {diff:.3g} > {tolerance:.3g}")
    return check
