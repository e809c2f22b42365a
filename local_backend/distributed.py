"""Data parallelism for `torchrun --nproc-per-node N -m local_backend.train` (or `accelerate launch`).

Each rank holds the whole (frozen) base model and trains on its share of every optimizer step's
micro-batches. After the step's backward passes, the LoRA gradients (small: tens of MB) are summed across
ranks in one all-reduce. Every rank divides its loss by the step's *global* supervised-token count, so
the sum is the exact gradient of the global token-mean loss, even when ranks got unequal token counts
or none at all (no DDP bookkeeping to hang on). FSDP is not used: LoRA's trainable state is tiny and the
base model is replicated; models that don't fit one GPU need QLoRA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
        return cls(dist.get_rank(), world, local_rank)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_grads(self, params: list[torch.nn.Parameter]) -> None:
        """Sum gradients across ranks in one flat all-reduce (missing grads count as zeros)."""
        if self.world <= 1:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).to(g.dtype)
            offset += n

    def max_(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
