"""FlashAttention-4 as an experiment for the local trainer's varlen attention (`local_throughput.py --fa4`).

flash-attn-4 ships CuTe-DSL kernels for Hopper and Blackwell. torch (>= 2.10) can route its own flash-attention
calls to them, `torch.nn.attention.varlen.varlen_attn` (our `fth_varlen`) included, through
`activate_flash_attention_impl("FA4")`; inputs FA4 does not support then raise (in the torch versions read here;
the hook is marked a prototype). Nothing in the trainer uses it yet: this measures whether it should, on the
packed rows the benchmark trains on. Any failure is reported as a reason, never lets the benchmark's other rows go.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from local_backend import attention


def activate() -> str | None:
    """Put FA4's varlen kernel behind the trainer's varlen attention; returns why it cannot, or None once it is
    in. FA4 is called directly: torch 2.11's own FA4 hook expects the forward to return (out, lse), which
    4.0.0b36 does not, and refuses the backward of a causal varlen call (varlen_attn passes causal as a window
    of (-1, 0) too, which the hook reads as a sliding window)."""
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    major, minor = torch.cuda.get_device_capability()
    if major not in (9, 10):
        return f"FA4 runs on compute capability 9.x/10.x, this GPU is {major}.{minor}"
    try:
        from flash_attn.cute.interface import flash_attn_varlen_func
    except Exception as exc:  # not installed, a CUDA library that does not load
        return f"not importable: {exc!r} (pip install flash-attn-4)"

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

    _SAVED.append(attention._KERNEL)
    attention._KERNEL = (fa4_varlen, frozenset({"scale", "window_size", "enable_gqa"}))
    return None


def restore() -> None:
    if _SAVED:
        attention._KERNEL = _SAVED.pop()


_SAVED: list[Any] = []  # the FA2 kernel while FA4 is in (a benchmark experiment, one process)


def _fwd_bwd(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int, dout: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    kernel = attention._KERNEL
    assert kernel is not None
    for t in (q, k, v):
        t.grad = None
    out = attention._cuda_varlen(kernel, q, k, v, cu, max_len, None)
    out.backward(dout)
    assert q.grad is not None and k.grad is not None and v.grad is not None
    return out.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()


def _time_ms(run: Any, repeats: int = 20) -> float:
    for _ in range(3):
        run()
    torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(repeats):
        run()
    torch.cuda.synchronize()
    return (time.perf_counter() - began) / repeats * 1e3


def kernel_check(lengths: list[int], heads: int, kv_heads: int, head_dim: int) -> tuple[bool, str]:
    """FA2 against FA4 on one packed row (these document lengths, GQA as the model has it): the largest
    difference of the output and of each gradient, relative to the largest FA2 value, and fwd+bwd time per call.
    Ok when FA4 activates, nothing is NaN and every difference is under 2%."""
    if not lengths:
        return False, "FA4 not checked: no document fits the first tokens-per-step budget"
    torch.manual_seed(0)
    total = sum(lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    make = {"device": "cuda", "dtype": torch.bfloat16}
    q = torch.randn(total, heads, head_dim, **make).requires_grad_()
    k = torch.randn(total, kv_heads, head_dim, **make).requires_grad_()
    v = torch.randn(total, kv_heads, head_dim, **make).requires_grad_()
    dout = torch.randn(total, heads, head_dim, **make)
    args = (q, k, v, cu, max(lengths), dout)
    reference = _fwd_bwd(*args)
    fa2_ms = _time_ms(lambda: _fwd_bwd(*args))
    why = activate()
    if why is not None:
        return False, f"FA4 not used: {why}"
    try:
        candidate = _fwd_bwd(*args)
        fa4_ms = _time_ms(lambda: _fwd_bwd(*args))
    except Exception as exc:  # an input the hook refuses, a kernel that fails to compile
        return False, f"FA4 failed on the packed row: {exc!r}"
    finally:
        restore()
    diffs = {
        name: float((c.float() - r.float()).abs().max() / r.float().abs().max())
        for name, r, c in zip(("out", "dq", "dk", "dv"), reference, candidate, strict=True)
    }
    finite = all(bool(torch.isfinite(c).all()) for c in candidate)
    ok = finite and max(diffs.values()) < 0.02
    shown = ", ".join(f"{n} {d:.1e}" for n, d in diffs.items())
    return ok, (
        f"FA4 vs FA2 on {total} tokens in {len(lengths)} documents: fwd+bwd {fa4_ms:.2f} vs {fa2_ms:.2f} ms "
        f"({fa2_ms / fa4_ms:.2f}x); max relative difference {shown}; {'finite' if finite else 'NaN/inf in FA4'}"
    )
