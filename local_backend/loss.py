"""Cross-entropy over supervised tokens only, in chunks, without ever holding full-vocabulary logits.

The stock loss upcasts all (tokens × vocab) logits to fp32 (16k tokens × 128k vocab ≈ 8 GB, plus its
gradient). Here only hidden states whose next token is supervised reach the output layer, in chunks of
`chunk` rows; for each chunk the forward pass also computes the gradient with respect to the hidden states
(softmax − one-hot, times the weight), so nothing is recomputed in backward and no chunk's logits are kept.
Returns the *sum* of token losses; the caller divides by the global supervised-token count.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def chunk_loss_and_grad(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ CE of one chunk and its gradient with respect to the logits (softmax − one-hot), in the logits' dtype.
    Pure tensor code, so `torch.compile` can fuse it into a couple of passes over the chunk."""
    full = logits.float()
    lse = torch.logsumexp(full, dim=-1, keepdim=True)
    target = full.gather(1, targets[:, None])
    loss = (lse - target).sum()
    # Softmax straight into the logits' dtype (one write, no float32 copy of the chunk); the target column,
    # p − 1, is computed in float32 so that it keeps its precision as p → 1.
    probs = torch.exp(full - lse).to(logits.dtype)
    return loss, probs.scatter(1, targets[:, None], (torch.exp(target - lse) - 1).to(logits.dtype))


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, chunk_fn: Any
    ) -> torch.Tensor:
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ctx.hidden_dtype, ctx.weight_dtype = hidden.dtype, weight.dtype
        hidden = hidden.to(weight.dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        acc = torch.promote_types(weight.dtype, torch.float32)
        grad_w = torch.zeros_like(weight, dtype=acc) if need_w else None
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], chunk):
                h, y = hidden[start : start + chunk], targets[start : start + chunk]
                loss, g = chunk_fn(h @ weight.t(), y)
                total += loss
                if grad_h is not None:
                    grad_h[start : start + chunk] = g @ weight
                if grad_w is not None:
                    grad_w += g.t().to(acc) @ h.to(acc)
        ctx.save_for_backward(*(t for t in (grad_h, grad_w) if t is not None))
        ctx.has = (grad_h is not None, grad_w is not None)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved = iter(ctx.saved_tensors)
        has_h, has_w = ctx.has
        grad_h = (next(saved) * grad_out).to(ctx.hidden_dtype) if has_h else None
        grad_w = (next(saved) * grad_out).to(ctx.weight_dtype) if has_w else None
        return grad_h, grad_w, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    targets: torch.Tensor,
    *,
    chunk: int = 4096,
    softcap: float | None = None,
    chunk_fn: Any = chunk_loss_and_grad,
) -> torch.Tensor:
    """Σ CE(head(hidden), targets) for hidden (N, d), targets (N,). A plain bias-free Linear head takes the
    fused path above; any other head (a LoRA-wrapped one, a bias, logit soft-capping) runs per chunk under
    activation checkpointing, which still keeps one chunk of logits at a time. `chunk_fn` may be a compiled
    `chunk_loss_and_grad`."""
    if hidden.shape[0] == 0:
        return hidden.sum() * 0.0
    if type(head) is torch.nn.Linear and head.bias is None and softcap is None:
        return _LinearCrossEntropy.apply(hidden, head.weight, targets, chunk, chunk_fn)  # type: ignore[no-any-return]

    def chunk_loss(h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = head(h).float()
        if softcap is not None:
            logits = torch.tanh(logits / softcap) * softcap
        return F.cross_entropy(logits, y, reduction="sum")

    parts = [
        checkpoint(chunk_loss, hidden[s : s + chunk], targets[s : s + chunk], use_reentrant=False)
        for s in range(0, hidden.shape[0], chunk)
    ]
    return torch.stack(parts).sum()
