"""FlashAttention-4 against FlashAttention-2 for the local trainer's varlen attention (`local_throughput.py
--fa4`): a kernel check on one packed row (outputs, gradients, time), then our trainer again with
`attention: fa4` (local_backend/attention.py calls flash-attn-4's CuTe kernels directly). Any failure is reported
as a reason, and never loses the benchmark's other rows.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from local_backend import attention


def _fwd_bwd(
    kernel: attention.Kernel, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int,
    dout: torch.Tensor,
) -> tuple[torch.Tensor, ...]:  # fmt: skip
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
    Ok when FA4 loads, nothing is NaN and every difference is under 2%."""
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
    fa2 = attention._KERNEL
    assert fa2 is not None
    reference = _fwd_bwd(fa2, *args)
    fa2_ms = _time_ms(lambda: _fwd_bwd(fa2, *args))
    if why := attention.fa4_unavailable():
        return False, f"FA4 not used: {why}"
    try:
        fa4 = attention.fa4_kernel()
        candidate = _fwd_bwd(fa4, *args)
        fa4_ms = _time_ms(lambda: _fwd_bwd(fa4, *args))
    except Exception as exc:  # an input it refuses, a kernel that fails to compile
        return False, f"FA4 failed on the packed row: {exc!r}"
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
