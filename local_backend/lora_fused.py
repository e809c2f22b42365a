"""A faster forward/backward for PEFT's LoRA Linear layers: the adapter folded into the weight for each matmul.

PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scale` as separate ops over the activations: the two
small matmuls, a scaled copy, and an add that reads and writes the whole output again; backward mirrors that,
so a LoRA layer moves its activations two or three extra times. With dropout 0 and one adapter the layer is
y = x·(W + s·B·A)ᵀ, so here each matmul uses W' = W + s·B·A, built per call (weight-sized, far smaller than
the activations of a 16k-token step) and rounded once to the compute dtype: forward is one GEMM, and in
backward dx = dy·W' is one more. The adapter's own gradients need x·Aᵀ and dy·s·B, both thin. W' is rebuilt
in backward rather than saved, so memory stays that of PEFT. In bf16 the output carries the same rounding as
PEFT's bf16 path (tests/local/test_kernels.py compares both against float64). Only the forward is swapped
(per module); weights, saving, loading and merging stay PEFT's own. Layers that don't qualify (dropout, DoRA,
quantized base, several adapters, merged or disabled adapters) keep PEFT's forward.
"""

from __future__ import annotations

import types
from typing import Any

import torch


class _LoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, lora_a: torch.Tensor,
        lora_b: torch.Tensor, scaling: float,
    ) -> torch.Tensor:  # fmt: skip
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else weight.dtype
        with torch.autocast(device, enabled=False):
            x2 = x.reshape(-1, x.shape[-1]).to(dtype)
            w, a, b = weight.to(dtype), lora_a.to(dtype), (lora_b * scaling).to(dtype)
            folded = torch.addmm(w, b, a)  # W + s·B·A
            y = x2 @ folded.t() if bias is None else torch.addmm(bias.to(dtype), x2, folded.t())
        ctx.save_for_backward(x2, w, a, b)
        ctx.meta = (x.shape, x.dtype, lora_a.dtype, lora_b.dtype, scaling)
        return y.view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x2, w, a, b = ctx.saved_tensors
        x_shape, x_dtype, a_dtype, b_dtype, scaling = ctx.meta
        dy2 = dy.reshape(-1, dy.shape[-1]).to(x2.dtype)
        g = dy2 @ b  # gradient at h = x·Aᵀ
        grad_b = (dy2.t() @ (x2 @ a.t())).to(b_dtype) * scaling
        grad_a = (g.t() @ x2).to(a_dtype)
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (dy2 @ torch.addmm(w, b, a)).view(x_shape).to(x_dtype)
        return dx, None, None, grad_a, grad_b, None


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    active = self.active_adapters
    if self.disable_adapters or self.merged or len(active) != 1 or args or kwargs or active[0] not in self.lora_A:
        return type(self).forward(self, x, *args, **kwargs)  # type: ignore[no-any-return]
    name = active[0]
    base = self.base_layer
    return _LoraLinear.apply(  # type: ignore[no-any-return]
        x, base.weight, base.bias, self.lora_A[name].weight, self.lora_B[name].weight, self.scaling[name]
    )


def fuse_lora_layers(peft_model: Any) -> int:
    """Swap the forward of every qualifying LoRA Linear in `peft_model`; returns how many were swapped."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    swapped = 0
    for module in peft_model.modules():
        if type(module) is not LoraLinear or type(module.base_layer) is not torch.nn.Linear:
            continue
        base = module.base_layer
        if base.weight.requires_grad or (base.bias is not None and base.bias.requires_grad):
            continue  # the fused backward gives the frozen base no gradient
        names = list(module.lora_A)
        plain = all(
            isinstance(module.lora_dropout[n], torch.nn.Identity)
            and not module.use_dora.get(n, False)
            and not getattr(module, "lora_bias", {}).get(n, False)
            for n in names
        )
        if len(names) == 1 and plain:
            module.forward = types.MethodType(_fused_forward, module)
            swapped += 1
    return swapped
