"""Before training: does the trainer's loss equal the model's own?

The trainer computes its loss its own way (hidden states → output layer → chunked cross-entropy, examples packed
in one row), which is what makes it fast, and which a model can silently disagree with: logit scaling (Granite
divides by `logits_scaling`, Falcon-H1 multiplies by `lm_head_multiplier`, ...), or a mask that lets packed
examples see each other (OPT builds its mask without `position_ids`). So on a few short examples, each token's
loss is computed three ways, all with the attention the run trains with: the model's own forward, one example
at a time; the trainer's path one example at a time; and the trainer's path packed (or padded) as it trains.
The first two differ by rounding only (measured on an H200 in bf16: 6e-8), so a difference there stops the run.
Packing changes the shapes of every matrix product, and under bf16 that alone moves deep random models by
0.01-0.4 per token, so there a packed difference is only a warning; in float32 it stops the run. (Attention the
varlen kernel cannot do, sliding windows and soft-capped scores, is kept from it when the attention is picked:
model.pick_attention.)
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
_SCALES = ("logit_scale", "logits_scaling", "lm_head_multiplier")  # config fields of models that scale logits


def scaled_logits(config: Any) -> str | None:
    """Where the check cannot run (FSDP: the whole model is on no one GPU), the known ways a model scales its
    logits, from its config."""
    found = [f"{key} = {value}" for key in _SCALES if isinstance(value := getattr(config, key, None), int | float)]
    return ", ".join(f for f in found if not f.endswith(" = 1") and not f.endswith(" = 1.0")) or None


def _sample(examples: Sequence[Example]) -> list[Example]:
    shortest = sorted(examples[:512], key=len)
    cut = [Example(e.input_ids[:MAX_TOKENS], e.labels[:MAX_TOKENS]) for e in shortest]
    return [e for e in cut if any(label != IGNORE for label in e.labels[1:])][:SAMPLE]


def _to(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _reference(causal_lm: Any, example: Example, device: torch.device) -> torch.Tensor:
    """Each supervised token's loss from the model's own forward."""
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
    loss: Any, peft_model: Any, examples: Sequence[Example], *, packed: bool, batch_size: int, pad_id: int,
    device: torch.device, autocast: torch.dtype | None,
) -> tuple[str, str] | None:  # fmt: skip
    """Raises ConfigError when the trainer's loss is not the model's; else (what was compared, event level). None:
    no example has a supervised token in its first MAX_TOKENS."""
    sample = _sample(examples)
    if not sample:
        return None
    causal_lm, training = peft_model.get_base_model(), peft_model.training
    together = packed or batch_size > 1
    peft_model.eval()
    context = torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None)
    try:
        with torch.no_grad(), context, torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            reference = torch.cat([_reference(causal_lm, e, device) for e in sample])
            one = [_ours(loss, _to(collate([e], packed=packed, pad_id=pad_id), device)) for e in sample]
            batched = _ours(loss, _to(collate(sample, packed=packed, pad_id=pad_id), device)) if together else None
    finally:
        peft_model.train(training)
    bf16 = autocast is not None
    alone = float((torch.cat(one) - reference).abs().mean())
    model_type = getattr(causal_lm.config, "model_type", "this model")
    if alone > (limit := 1e-2 if bf16 else 1e-3):
        raise ConfigError(
            f"the trainer's loss differs from {model_type}'s own (mean |Δ| {alone:.3g} per token, allowed "
            f"{limit:g}): the model does something to its logits that the trainer does not (logit scaling?). "
            "This architecture is not supported yet; trainer.check_loss: false trains anyway, with a wrong loss"
        )
    shown = (
        f"checked the trainer's loss against {model_type}'s own on {len(sample)} examples ({reference.numel()} "
        f"tokens): mean |Δ| per token {alone:.1e} one by one"
    )
    if batched is None:
        return shown, "info"
    apart = float((batched - reference).abs().mean())
    shown += f", {apart:.1e} {'packed' if packed else 'batched'}"
    if apart <= 1e-3 or (bf16 and apart <= 0.05):
        return shown, "info"
    what, fix = ("packed in one row", "trainer.packing: false") if packed else ("padded", "trainer.batch_size: 1")
    doubt = (
        f"{shown}. With the examples {what}, the loss differs from each example's alone by more than rounding "
        f"should: the model's attention may let examples see each other ({fix} avoids it)"
    )
    if bf16:  # under bf16 a deep model's rounding alone can do this: said, not refused
        return doubt + "; under bf16 it may be rounding (a float32 run, dtype: fp32, settles it)", "warning"
    raise ConfigError(doubt)
