"""Vertex AI bound to its emulators: the fake tuning API and gcp-storage-emulator (behind a counting proxy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from finetune_hub.spec import FineTuneSpec
from tests.conformance.binding import Binding
from tests.emulators.vertex_server import VertexStack

PROJECT, LOCATION = "fth-test-project", "us-central1"
#: the bearer token the tests' credentials carry; it must never reach the job store
TOKEN = "ya29.vertex-emulator-token-7f3a9c"


def vertex_client(stack: VertexStack, *, timeout_s: float = 1.0) -> Any:
    """The adapter's own clients, pointed at the emulators with a fixed access token (no ADC lookup)."""
    from google.oauth2.credentials import Credentials

    from providers.vertex_client import make_clients

    return make_clients(
        PROJECT, LOCATION, base_url=stack.vertex.url, timeout_s=timeout_s, credentials=Credentials(token=TOKEN)
    )


class VertexBinding(Binding):
    provider = "vertex"
    create_request = f"POST /v1/projects/{PROJECT}/locations/{LOCATION}/tuningJobs "
    secret = TOKEN

    def start(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.stack = VertexStack().start()
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", self.stack.storage_url)  # the storage client's standard switch

    def stop(self) -> None:
        self.stack.stop()

    def spec(self, train: Path, validation: Path | None) -> FineTuneSpec:
        return FineTuneSpec.from_dict(
            {
                "name": "conformance",
                "base_model": {"vertex": "gemini-2.5-flash"},
                "data": {"train": str(train), "validation": str(validation) if validation else None},
                "hyperparameters": {"epochs": 2, "learning_rate_multiplier": 1.0},
                "lora": {"rank": 4},
                "providers": {"vertex": {"project": PROJECT, "location": LOCATION, "bucket": self.stack.bucket}},
            }
        )

    def client(self) -> Any:
        return vertex_client(self.stack)

    def advance(self, remote_id: str, to: str) -> None:
        self.stack.vertex.advance(remote_id, to)

    def inject(self, fault: str, count: int = 1, on: str | None = None) -> None:
        self.stack.vertex.faults.plan(fault, count, on=on)

    def remote_jobs(self) -> int:
        return len(self.stack.vertex.jobs)

    def uploads(self) -> int:
        return self.stack.uploads()
