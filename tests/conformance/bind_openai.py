"""OpenAI and Azure OpenAI bound to the stateful OpenAI emulator, configured through the standard
environment variables (the adapter builds its own SDK client, as it does for users)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_hub.spec import FineTuneSpec
from tests.conformance.binding import Binding
from tests.emulators.openai_server import OpenAIEmulator

#: the date retirement rules are checked against, so the suite does not change verdict as time passes
TODAY = "2026-11-27"


class OpenAIBinding(Binding):
    provider = "openai"
    create_request = "POST /v1/fine_tuning/jobs"
    secret = "emulator-secret-0123456789abcdef"
    base_model = "gpt-4o-mini-2024-07-18"

    def start(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = OpenAIEmulator(api_key=self.secret)
        self.emulator.start()
        for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_API_VERSION", "AZURE_OPENAI_AD_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("FTH_TODAY", TODAY)
        self.configure(monkeypatch)

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("OPENAI_BASE_URL", self.emulator.url + "/v1")
        monkeypatch.setenv("OPENAI_API_KEY", self.secret)

    def stop(self) -> None:
        self.emulator.stop()

    def settings(self) -> dict[str, object]:
        return {"request_timeout": 1.0}

    def spec(self, train: Path, validation: Path | None) -> FineTuneSpec:
        return FineTuneSpec.from_dict(
            {
                "name": "conformance",
                "base_model": self.base_model,
                "data": {"train": str(train), "validation": str(validation) if validation else None},
                "hyperparameters": {"epochs": 2},
                "suffix": "conformance",
                "seed": 7,
                "providers": {self.provider: self.settings()},
            }
        )

    def advance(self, remote_id: str, to: str) -> None:
        self.emulator.advance(remote_id, to)

    def inject(self, fault: str, count: int = 1, on: str | None = None) -> None:
        self.emulator.faults.plan(fault, count, on)

    def served(self, model: str) -> str:
        """The name to ask `model` by: OpenAI answers by model id."""
        return model

    def remote_jobs(self) -> int:
        return len(self.emulator.jobs)

    def uploads(self) -> int:
        return self.emulator.upload_count


class AzureOpenAIBinding(OpenAIBinding):
    provider = "azure_openai"
    create_request = "POST /openai/v1/fine_tuning/jobs"
    base_model = "gpt-4.1-2025-04-14"

    def configure(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", self.emulator.url)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", self.secret)

    def settings(self) -> dict[str, object]:
        return {"request_timeout": 1.0, "training_type": "globalstandard"}

    def served(self, model: str) -> str:
        """Azure answers only through a deployment: one is made for `model`, as `az ... deployment create` would."""
        name = f"deployment-{len(self.emulator.deployments) + 1}"
        self.emulator.deployments[name] = model
        return name
