"""Per-example attention inside packed rows ("varlen"), registered with transformers' AttentionInterface.

On CUDA it calls PyTorch's FlashAttention varlen kernel (`torch.nn.attention.varlen.varlen_attn`, torch ≥ 2.10),
which only computes each example's own causal block. Elsewhere it runs SDPA per segment: slower, but the
same maths, so the packed code path can be tested on a CPU. transformers builds no mask for an attention
name it does not know, and passes the collator's `cu_seq_lens_*`/`max_length_*` through to this function.
"""

from __future__ import annotations

import functools
import inspect
import itertools
from typing import Any

import torch
import torch.nn.functional as F

NAME, FA4_NAME = "fth_varlen", "fth_varlen_fa4"
Kernel = tuple[Any, frozenset[str]]  # the varlen function and the keyword arguments it takes


def _find_kernel() -> Kernel | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


_KERNEL = _find_kernel()  # resolved once: compiled code must not trace `inspect`


def kernel_available() -> bool:
    return torch.cuda.is_available() and _KERNEL is not None


@functools.cache  # one kernel function per process: fa4_unavailable() and register() ask for it
def fa4_kernel() -> Kernel:
    """FlashAttention-4's varlen kernel (flash-attn-4, CuTe; Hopper and Blackwell), in varlen_attn's shape. Called
    directly: torch 2.11's own FA4 hook expects a 2-tuple from 4.0.0b36's forward, and refuses the backward of a
    causal varlen call. Raises ImportError when flash-attn-4 is not installed."""
    from flash_attn.cute.interface import flash_attn_varlen_func

    @torch.compiler.disable  # a CuTe kernel: compiled decoder layers call it between their graphs
    def fa4_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_q: torch.Tensor,
                   cu_seq_k: torch.Tensor, max_q: int, max_k: int, *, scale: float | None = None,
                   window_size: tuple[int, int] = (-1, -1), enable_gqa: bool = False) -> torch.Tensor:  # fmt: skip
        out = flash_attn_varlen_func(
            query,
            key,
            value,
            cu_seqlens_q=cu_seq_q,
            cu_seqlens_k=cu_seq_k,
            max_seqlen_q=max_q,
            max_seqlen_k=max_k,
            softmax_scale=scale,
            causal=tuple(window_size) == (-1, 0),
        )  # fmt: skip  (GQA: native)
        return out[0] if isinstance(out, tuple) else out

    return fa4_varlen, frozenset({"scale", "window_size", "enable_gqa"})


def fa4_unavailable() -> str | None:
    """Why FA4 cannot run here, or None."""
    if not torch.cuda.is_available():
        return "needs a CUDA GPU"
    if (major := torch.cuda.get_device_capability()[0]) not in (9, 10):
        return f"runs on compute capability 9.x and 10.x (Hopper, Blackwell), this GPU is {major}.x"
    try:
        fa4_kernel()
    except Exception as exc:  # not installed, or a CUDA library that does not load
        return f"flash-attn-4 does not load ({exc!r}): pip install flash-attn-4"
    return None


def varlen_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    kernel: Kernel | None = _KERNEL,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """q/k/v: (1, heads, T, head_dim) for one flattened row; returns (1, T, heads, head_dim)."""
    if query.shape[0] != 1 or attention_mask is not None:
        raise RuntimeError(f"{NAME} attention takes one packed row and no padding mask (use packing = true)")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, heads, head_dim)
    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # a single unpacked sequence
        cu = torch.tensor([0, q.shape[0]], dtype=torch.int32, device=q.device)
    max_len = int(kwargs.get("max_length_q") or q.shape[0])
    device = q.device.type
    if torch.is_autocast_enabled(device):  # as autocast treats SDPA: QLoRA's float32 norms hand over float32 q/k/v
        dtype = torch.get_autocast_dtype(device)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
    half = q.dtype in (torch.float16, torch.bfloat16)  # the kernel's dtypes and head sizes
    if q.is_cuda and kernel is not None and half and q.shape[-1] % 8 == 0 and q.shape[-1] <= 256:
        out = _cuda_varlen(kernel, q, k, v, cu, max_len, scaling)
    else:
        out = _segment_sdpa(q, k, v, cu, scaling)
    return out.unsqueeze(0), None


def _cuda_varlen(
    kernel: Kernel,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu: torch.Tensor,
    max_len: int,
    scaling: float | None,
) -> torch.Tensor:
    varlen_attn, params = kernel
    extra: dict[str, Any] = {}
    if q.shape[1] != k.shape[1]:  # grouped-query attention
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            repeat = q.shape[1] // k.shape[1]
            k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    # The signature moved between releases: causal is `window_size=(-1, 0)` (newer) or `is_causal=True` (2.10).
    extra.update({"window_size": (-1, 0)} if "window_size" in params else {"is_causal": True})
    if "scale" in params and scaling is not None:
        extra["scale"] = scaling
    cu = cu.to(q.device, torch.int32)
    return varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, max_len, max_len, **extra)


def _segment_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, scaling: float | None
) -> torch.Tensor:
    """Reference path: causal SDPA on each segment separately."""
    bounds = cu.tolist()
    outs = []
    gqa = q.shape[1] != k.shape[1]
    for a, b in itertools.pairwise(bounds):
        if b > a:
            sq, sk, sv = (t[a:b].transpose(0, 1).unsqueeze(0) for t in (q, k, v))  # (1, heads, len, head_dim)
            o = F.scaled_dot_product_attention(sq, sk, sv, is_causal=True, scale=scaling, enable_gqa=gqa)
            outs.append(o[0].transpose(0, 1))
    return torch.cat(outs, dim=0)


def register(fa4: bool = False) -> str:
    """Make `attn_implementation=NAME` (or FA4_NAME, FlashAttention-4 behind it) available to transformers
    models; returns the name."""
    from transformers import AttentionInterface

    if fa4:
        AttentionInterface.register(FA4_NAME, functools.partial(varlen_attention, kernel=fa4_kernel()))
        return FA4_NAME
    AttentionInterface.register(NAME, varlen_attention)
    return NAME
