"""The packed (varlen) attention kernels alone, forward + backward: FlashAttention-2 vs cuDNN, on a CUDA GPU.

    python benchmarks/attention_kernels.py        # Llama-3.2-1B's heads, rows of 16384 tokens from the chat mix

Each packed row holds examples drawn from local_throughput.py's synthetic chat mix; both kernels run through
local_backend/attention.py as the trainer calls them. Prints the median milliseconds per row (one layer) and
the largest difference between the kernels' outputs and gradients.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from local_throughput import LLAMA_1B, synthetic_chat

from local_backend import attention

HEADS, KV_HEADS, HEAD_DIM, ROW = 32, 8, 64, 16384


def rows(count: int) -> list[list[int]]:
    lengths = [len(e) for e in synthetic_chat(count * 20, LLAMA_1B)]
    out, row = [], []
    for n in lengths:
        if sum(row) + n > ROW:
            out.append(row)
            row = []
        row.append(n)
        if len(out) == count:
            break
    return out


def timed(
    attend: Callable[..., Any], q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_len: int
) -> tuple[float, list[torch.Tensor]]:
    times = []
    for i in range(23):
        q.grad = k.grad = v.grad = None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out, _ = attend(None, q, k, v, None, scaling=HEAD_DIM**-0.5, cu_seq_lens_q=cu, max_length_q=max_len)
        out.backward(torch.ones_like(out))
        end.record()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(start.elapsed_time(end))
    return statistics.median(times), [out.detach(), q.grad, k.grad, v.grad]


def main() -> int:
    if not torch.cuda.is_available():
        print("needs a CUDA GPU")
        return 2
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name()}")
    torch.manual_seed(0)
    for lengths in rows(3):
        total = sum(lengths)
        q = torch.randn(1, HEADS, total, HEAD_DIM, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn(1, KV_HEADS, total, HEAD_DIM, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        v = torch.randn(1, KV_HEADS, total, HEAD_DIM, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
        flash_ms, flash = timed(attention.varlen_attention, q, k, v, cu, max(lengths))
        cudnn_ms, cudnn = timed(attention.cudnn_varlen_attention, q, k, v, cu, max(lengths))
        diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(flash, cudnn, strict=True))
        print(f"row of {total} tokens, {len(lengths)} examples (longest {max(lengths)}): flash {flash_ms:.3f} ms, "
              f"cudnn {cudnn_ms:.3f} ms ({flash_ms / cudnn_ms:.2f}x); largest difference {diff:.2e}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
