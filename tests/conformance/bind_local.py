"""Conformance binding for `local`: the platform is a real trainer subprocess, training a tiny demo model
built in the test (no downloads).

- advance("running") waits until the process reports running; "succeeded" waits until it exits after
  training; "failed" SIGKILLs its process group (what the OOM killer does), which the adapter must notice.
- inject(fault) puts a fault-injecting proxy in front of the runner (the adapter's client), the local
  analogue of the HTTP fault proxy: the next call raises the OS error that fault means on a local
  machine: 401 → PermissionError, 404 → FileNotFoundError, 429 → disk quota exceeded (EDQUOT), 500 → EIO,
  503 → EAGAIN, timeout → TimeoutError, drop → EINTR (no answer), lost → the call is carried out and then
  its answer is lost.
"""

from __future__ import annotations

import errno
import functools
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from finetune_hub.spec import FineTuneSpec
from providers.local_runs import LocalRunner, _alive
from tests.conformance.binding import Binding
from tests.emulators.harness import Faults

_ERRORS = {
    "401": lambda: PermissionError(errno.EACCES, "Permission denied", "runs"),
    "404": lambda: FileNotFoundError(errno.ENOENT, "No such file or directory", "runs"),
    "429": lambda: OSError(errno.EDQUOT, "Disk quota exceeded"),
    "500": lambda: OSError(errno.EIO, "Input/output error"),
    "503": lambda: BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable"),
    "timeout": lambda: TimeoutError(errno.ETIMEDOUT, "Connection timed out"),
    "drop": lambda: InterruptedError(errno.EINTR, "Interrupted system call"),
    "lost": lambda: InterruptedError(errno.EINTR, "Interrupted system call (after the call took effect)"),
}


class FaultyRunner:
    """Delegates to a LocalRunner; before (or, for "lost", after) a planned call, raises the fault's OS error."""

    def __init__(self, runner: LocalRunner, faults: Faults) -> None:
        self._runner, self._faults = runner, faults

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._runner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            fault = self._faults.next(name)
            if fault is not None and fault != "lost":
                raise _ERRORS[fault]()
            result = target(*args, **kwargs)
            if fault == "lost":
                raise _ERRORS["lost"]()
            return result

        return call


@functools.cache
def demo_model() -> Path:
    """One tiny Llama-shaped model for the whole session."""
    from local_backend.demo_model import create_demo_model
    from tests.conftest import chat_example

    texts = [m["content"] for i in range(200) for m in chat_example(i)["messages"]]
    return create_demo_model(Path(tempfile.mkdtemp(prefix="fth-demo-")) / "model", texts=texts, vocab_size=300)


class LocalBinding(Binding):
    provider = "local"
    create_request = "create"
    secret = None

    def start(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = tmp_path / "local-runs"
        self.runner = LocalRunner(self.root)
        self.faults = Faults()
        self.model = demo_model()

    def stop(self) -> None:
        for run_id in self.runner.runs():
            self.runner.kill(run_id)
        deadline = time.monotonic() + 10
        for run_id in self.runner.runs():
            status = self.runner._run(run_id).read_status() or {}
            while _alive(status) and time.monotonic() < deadline:
                time.sleep(0.05)

    def spec(self, train: Path, validation: Path | None) -> FineTuneSpec:
        return FineTuneSpec.model_validate(
            {
                "name": "conformance-local",
                "base_model": {"local": str(self.model)},
                "data": {"train": str(train), "validation": str(validation) if validation else None},
                # the run reports "running" from its start, while loading (seconds), so it is still going after
                "hyperparameters": {"epochs": 4, "batch_size": 2, "learning_rate": 1e-3},
                "lora": {"rank": 4, "dropout": 0.0},
                "seed": 1,
                "providers": {"local": {"runs_dir": str(self.root), "save_steps": 10, "eval_steps": 12}},
            }
        )

    def client(self) -> Any:
        return FaultyRunner(self.runner, self.faults)

    def advance(self, remote_id: str, to: str) -> None:
        if to == "failed":
            self.runner.kill(remote_id)
            return
        wanted = {"running": ("running", "succeeded"), "succeeded": ("succeeded",)}[to]
        deadline = time.monotonic() + 120
        while (state := self.runner.state(remote_id))["state"] not in wanted:
            if state["state"] in ("failed", "died", "cancelled") or time.monotonic() > deadline:
                log = "\n".join(self.runner.log_lines(remote_id)[0][-20:])
                raise AssertionError(f"local run {remote_id} is {state['state']} waiting for {to}: {state}\n{log}")
            time.sleep(0.05)

    def inject(self, fault: str, count: int = 1, on: str | None = None) -> None:
        self.faults.plan(fault, count, on=on)

    def remote_jobs(self) -> int:
        return len(self.runner.runs())

    def uploads(self) -> int:
        return self.runner.data_files()
