"""The SageMaker adapter against moto behind the SageMaker lifecycle layer (tests/emulators/sagemaker_server.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from finetune_hub.spec import FineTuneSpec
from providers.sagemaker_aws import AwsClients
from tests.conformance.binding import Binding
from tests.emulators.sagemaker_server import ACCOUNT, REGION, SageMakerEmulator

BUCKET = "fth-test-bucket"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/fth-sagemaker-execution"
#: retries off (the base class retries) and timeouts shorter than the harness's "timeout" fault
TEST_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=1)


def aws_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, secret: str, tmp_path: Path) -> None:
    """Point boto3's standard settings at the emulator, away from any real AWS configuration."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "fthtestaccesskey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def settings(**extra: Any) -> dict[str, Any]:
    return {"role_arn": ROLE, "bucket": BUCKET, **extra}


class SageMakerBinding(Binding):
    provider = "sagemaker"
    create_request = "SageMaker.CreateTrainingJob"
    secret = "fth-test-secret-0123456789abcdef"

    def start(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.emulator = SageMakerEmulator().start()
        assert isinstance(self.emulator, SageMakerEmulator)
        aws_environment(monkeypatch, self.emulator.url, self.secret, tmp_path)
        self.emulator.direct("s3").create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        self.emulator.stop()

    def spec(self, train: Path, validation: Path | None) -> FineTuneSpec:
        return FineTuneSpec.from_dict(
            {
                "name": "conformance",
                "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
                "data": {"train": str(train), "validation": str(validation) if validation else None},
                "hyperparameters": {"epochs": 2, "learning_rate": 1e-4, "batch_size": 4},
                "lora": {"rank": 8},
                "seed": 7,
                "providers": {"sagemaker": settings()},
            }
        )

    def client(self) -> AwsClients:
        if not hasattr(self, "_clients"):  # one set per test: building boto3 clients takes a moment
            self._clients = AwsClients.create(REGION, config=TEST_CONFIG)
        return self._clients

    def advance(self, remote_id: str, to: str) -> None:
        self.emulator.advance(remote_id, to)

    def inject(self, fault: str, count: int = 1, on: str | None = None) -> None:
        self.emulator.faults.plan(fault, count, on=on)

    def remote_jobs(self) -> int:
        return len(self.emulator.remote_jobs())

    def uploads(self) -> int:
        return self.emulator.uploads()
