"""Before training: does the trainer's loss equal the model's own?

The trainer computes its loss its own way (hidden states → output layer → chunked cross-entropy, examples packed
in one row), which is what makes it fast, and which a model can silently disagree with: logit scaling (Granite
divides by `logits_scaling`, Falcon-H1 multiplies by `lm_head_multiplier`, ...), or a mask that lets packed
examples see each other (OPT builds its mask without `position_ids`). So on a few short examples, each token's
loss is computed three ways: the model's own forward with its reference (eager) attention, one example at a
time; the trainer's path one example at a time; and the trainer's path packed. A difference beyond rounding
stops the run before any step, naming the cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from local_backend.config import ConfigError
from local_backend.data import IGNORE, Example, collate
from local_backend.loss import linear_cross_entropy

SAMPLE, MAX_TOKENS = 3, 256  # the shortest examples, cut to this many tokens: a check of a second or so


def _sample(examples: Sequence[Example]) -> list[Example]:
    shortest = sorted(examples[:512], key=len)
    cut = [Example(e.input_ids[:MAX_TOKENS], e.labels[:MAX_TOKENS]) for e in shortest]
    return [e for e in cut if any(label != IGNORE for label in e.labels[1:])][:SAMPLE]


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _reference(causal_lm: Any, example: Example, device: torch.device) -> torch.Tensor:
    """Each supervised token's loss from the model's own forward, with its eager attention."""
    batch = _to(collate([example], packed=False, pad_id=0), device)
    logits = causal_lm(input_ids=batch["input_ids"], use_cache=False).logits
    return F.cross_entropy(logits.flatten(0, 1).float()[batch["target_index"]], batch["targets"], reduction="none")


def _ours(loss: Any, batch: dict[str, Any]) -> torch.Tensor:
    """Each supervised token's loss through the trainer's own path (TokenLoss)."""
    hidden = loss.hidden_at_targets(batch)
    return torch.stack([
        linear_cross_entropy(hidden[i : i + 1], loss.head, batch["targets"][i : i + 1], softcap=loss.softcap)
        for i in range(hidden.shape[0])
    ])  # fmt: skip


def check(
    loss: Any, peft_model: Any, examples: Sequence[Example], *, packed: bool, pad_id: int, device: torch.device,
    autocast: torch.dtype | None,
) -> str | None:  # fmt: skip
    """Raises ConfigError when the trainer's loss is not the model's; else says what was compared (None: no
    example has a supervised token in its first MAX_TOKENS)."""
    sample = _sample(examples)
    if not sample:
        return None
    causal_lm = peft_model.get_base_model()
    attention, training = causal_lm.config._attn_implementation, peft_model.training
    peft_model.eval()
    context = torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None)
    try:
        with torch.no_grad(), context, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            causal_lm.set_attn_implementation("eager")
            reference = torch.cat([_reference(causal_lm, e, device) for e in sample])
            causal_lm.set_attn_implementation(attention)
            one_by_one = torch.cat(
                [_ours(loss, _to(collate([e], packed=packed, pad_id=pad_id), device)) for e in sample]
            )
            together = _ours(loss, _to(collate(sample, packed=packed, pad_id=pad_id), device))
    finally:
        causal_lm.set_attn_implementation(attention)
        peft_model.train(training)
    tolerance = 1e-3 if autocast is None else 0.05  # per-token loss, mean |Δ|: float32, or bf16 rounding
    alone, batched = (float((ours - reference).abs().mean()) for ours in (one_by_one, together))
    model_type = getattr(causal_lm.config, "model_type", "this model")
    if alone > tolerance:
        raise ConfigError(
            f"the trainer's loss differs from {model_type}'s own (mean |Δ| {alone:.3g} per token, allowed "
            f"{tolerance:g}): the model does something to its logits that the trainer does not (logit scaling?). "
            "This architecture is not supported yet; trainer.check_loss: false trains anyway, with a wrong loss"
        )
    if batched > tolerance:
        what = "packed in one row" if packed else "padded in one batch"
        raise ConfigError(
            f"with examples {what}, the loss differs from {model_type}'s own for each alone (mean |Δ| "
            f"{batched:.3g} per token, allowed {tolerance:g}): its attention lets the examples see each other. "
            "Set trainer.packing: false"
            if packed
            else "Set trainer.batch_size: 1"
        )
    return (
        f"checked: the trainer's loss equals {model_type}'s own on {len(sample)} examples ({reference.numel()} "
        f"tokens; mean |Δ| per token {alone:.1e} one by one, {batched:.1e} {'packed' if packed else 'batched'})"
    )
