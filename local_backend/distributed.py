"""Data parallelism for `torchrun --nproc-per-node N -m local_backend.train` (or `accelerate launch`).

Each rank trains on its share of every optimizer step's micro-batches and divides its loss by the step's
*global* supervised-token count, so the summed gradients are the exact gradient of the global token-mean
loss, whatever each rank's token count. Two ways to hold the model:
- replicated (default): each rank holds the whole frozen base model; after the step's backward passes the
  LoRA gradients (tens of MB) are summed in one all-reduce. A rank with no micro-batch left simply waits.
- sharded (`fsdp: true`): PyTorch's FSDP2 (`fully_shard`) splits every decoder layer's weights across the
  ranks and gathers a layer only while it runs, so a model that does not fit one GPU trains on several.
  Its collectives need every rank to run the same number of forward and backward passes: a rank short of
  micro-batches runs a filler batch with zero weight (the trainer's job).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from local_backend.config import ConfigError


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

    def sharding(self, fsdp: bool) -> bool:
        """Whether the model is sharded: `fsdp` asked for, and more than one process to shard across."""
        if fsdp and self.world > 1 and torch.__version__ < (2, 7):  # checked before the model is loaded
            raise ConfigError(f"train config: fsdp needs torch >= 2.7 (FSDP2), this is {torch.__version__}")
        return fsdp and self.world > 1

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

    def gather(self, value: Any) -> list[Any]:
        """`value` from every rank, in rank order, on every rank (picklable objects, e.g. RNG states)."""
        if self.world <= 1:
            return [value]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, value)
        return out

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


def shard(root: torch.nn.Module, layers: list[torch.nn.Module], compute_dtype: torch.dtype | None) -> None:
    """FSDP2 over `layers` (each gathered only while it runs) and `root` (the rest: embeddings, norm, output
    layer; it calls every layer). Weights move to this rank's device as they are sharded. Gradients are
    reduced in float32 and averaged over the ranks, which the trainer's loss scale undoes (a divide factor of 1
    would need a pre-multiplied sum, which gloo lacks)."""
    if not layers:  # sharding the root alone would gather the whole model at once
        raise ConfigError("train config: fsdp: this model's decoder layers were not found (model.layers or .h)")
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32)
    for layer in layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(root, mp_policy=policy)


def whole(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (DTensor) value gathered whole on every rank; a plain tensor as it is."""
    from torch.distributed.tensor import DTensor

    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def shard_like(value: torch.Tensor, param: torch.Tensor) -> Any:
    """`value` (whole, on every rank) laid out as `param` is: this rank's shard of it when `param` is sharded."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(param, DTensor):
        value = value.to(param.device, param.dtype)
        return distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)  # no sends
    return value
