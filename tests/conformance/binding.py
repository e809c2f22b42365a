"""What the conformance suite needs from each adapter's emulator, in a few methods.

Each adapter gets one `Binding` subclass (in `bind_<provider>.py`) listed in `BINDINGS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import pytest

from finetune_hub.spec import FineTuneSpec


class Binding(ABC):
    provider: str
    #: identifies the create-job request on the wire (matched against "METHOD PATH" and the
    #: X-Amz-Target header), so the suite can lose exactly that response
    create_request: str
    #: the credential the emulator was given; the suite checks it never reaches the store
    secret: str | None = None

    @abstractmethod
    def start(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Start the emulator(s) and point the SDK at them (set env vars with `monkeypatch`).
        SDK-level retries are off in tests (the base class retries), and client timeouts short (~1 s)."""

    def stop(self) -> None:
        """Stop what `start` started."""

    @abstractmethod
    def spec(self, train: Path, validation: Path | None) -> FineTuneSpec:
        """A valid spec for this provider using the given data files."""

    def client(self) -> Any:
        """An SDK client pointed at the emulator, to inject; None to let the adapter build its own."""
        return None

    @abstractmethod
    def advance(self, remote_id: str, to: str) -> None:
        """Drive the emulated job to "running", "succeeded" or "failed"."""

    @abstractmethod
    def inject(self, fault: str, count: int = 1, on: str | None = None) -> None:
        """Make the next `count` platform responses (only those matching `on`, if given) fail with `fault`:
        "401", "404", "429", "500", "503", "timeout", "drop" (no reply), "lost" (processed, reply dropped)."""

    @abstractmethod
    def remote_jobs(self) -> int:
        """How many jobs exist on the emulated platform."""

    @abstractmethod
    def uploads(self) -> int:
        """How many data files were uploaded to the emulated platform."""
