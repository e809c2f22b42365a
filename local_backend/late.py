"""What the GPU computed, read without making it wait: values and timestamps read a step late.

`.item()` (or `float(tensor)`) waits for everything queued on the stream, the next step included, so a per-step
log line would drain the GPU's queue and leave it idle while the host launches the next step. Here values are
copied into pinned host memory without blocking, behind a CUDA event, and read a step later, when the event
has passed. Timestamps are CUDA events too: a lap is measured on the GPU's own timeline (idle gaps included),
so it stays right whether the host or the device is the slower one. Off CUDA the work is synchronous, and the
host clock at the mark is the time the work ended.
"""

from __future__ import annotations

import time

import torch


class Mark:
    """A point in the device's queue of work."""

    def __init__(self, device: torch.device) -> None:
        self.host = time.perf_counter()
        self.event: torch.cuda.Event | None = None
        if device.type == "cuda":
            self.event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            self.event.record(torch.cuda.current_stream(device))

    def wait(self) -> None:
        """Until the work queued before the mark is done (not the work queued after it)."""
        if self.event is not None:
            self.event.synchronize()  # type: ignore[no-untyped-call]

    def seconds_since(self, earlier: Mark) -> float:
        """Time between two marks; this one must have been waited for."""
        if self.event is not None and earlier.event is not None:
            return float(earlier.event.elapsed_time(self.event)) / 1000  # type: ignore[no-untyped-call]
        return self.host - earlier.host


class LateRead:
    """A small tensor's values, copied when its step is queued and read when it is done."""

    def __init__(self, values: torch.Tensor) -> None:
        cuda = values.device.type == "cuda"
        self.host = torch.empty(values.shape, dtype=values.dtype, pin_memory=cuda)
        self.host.copy_(values, non_blocking=cuda)
        self.mark = Mark(values.device)

    def values(self) -> list[float]:
        self.mark.wait()
        return [float(v) for v in self.host.tolist()]
