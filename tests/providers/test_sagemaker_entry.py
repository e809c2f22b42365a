"""The packaged trainer run as a SageMaker container runs it: the adapter's hyperparameters in
hyperparameters.json, the data in channel directories, the source unpacked from the tarball the adapter
uploads, `python local_backend/sagemaker_entry.py` from the code directory (CPU, a tiny model built here)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from finetune_hub.spec import FineTuneSpec
from local_backend import sagemaker_entry
from providers import sagemaker_request as req
from providers.sagemaker import SageMakerSettings
from tests.conformance.bind_sagemaker import BUCKET, ROLE
from tests.conftest import write_chat_jsonl


class Container:
    """The /opt/ml layout of a training container, under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config = root / "input" / "config"
        self.data = root / "input" / "data"
        self.code = root / "code"
        self.model = root / "model"
        self.output = root / "output"
        self.checkpoints = root / "checkpoints"
        for path in (self.config, self.data, self.code):
            path.mkdir(parents=True, exist_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "SM_INPUT_CONFIG_DIR": str(self.config),
            "SM_INPUT_DATA_DIR": str(self.data),
            "SM_MODEL_DIR": str(self.model),
            "SM_OUTPUT_DIR": str(self.output),
            "SM_OUTPUT_DATA_DIR": str(self.output / "data"),
            "FTH_CHECKPOINT_DIR": str(self.checkpoints),
            "TRAINING_JOB_NAME": "fth-test-job",
            **extra,
        }

    def channel(self, name: str, source: Path) -> Path:
        (self.data / name).mkdir(parents=True, exist_ok=True)
        target = self.data / name / "data.jsonl"
        target.write_bytes(source.read_bytes())
        return target

    def run(self, *, timeout: float = 240, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "FTH_"))}
        env.update(self.env(**extra), PYTHONPATH="", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        return subprocess.run(
            [sys.executable, req.ENTRY_POINT, "--epochs", "1"],  # the toolkit also passes hyperparameters as args
            cwd=self.code, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


@pytest.fixture
def container(tmp_path: Path) -> Container:
    return Container(tmp_path / "opt-ml")


def adapter_hyperparameters(tmp_path: Path, **settings: object) -> dict[str, str]:
    """The HyperParameters the adapter sends for a spec whose base model is an S3 folder (the model channel)."""
    spec = FineTuneSpec.from_dict(
        {
            "name": "entry",
            "base_model": f"s3://{BUCKET}/models/demo/",
            "data": {"train": str(tmp_path / "train.jsonl")},
            "hyperparameters": {"epochs": 1, "learning_rate": 5e-3, "batch_size": 4, "max_seq_length": 128},
            "lora": {"rank": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
            "seed": 3,
            "providers": {"sagemaker": {"role_arn": ROLE, "bucket": BUCKET, **settings}},
        }
    )
    inputs = req.JobInputs(
        name="fth-entry-1",
        spec=spec,
        settings=SageMakerSettings(**spec.settings_for("sagemaker")),
        region="us-east-1",
        files={"train": "s3://b/t/", "validation": "s3://b/v/", "model": "s3://b/m/", "code": "s3://b/c.tar.gz"},
        bucket_uri=f"s3://{BUCKET}/fth",
        tags=[],
    )
    request = req.trainer_request(inputs)
    hyperparameters: dict[str, str] = request["HyperParameters"]
    return hyperparameters


def unpack_source(container: Container) -> None:
    archive = req.package_source(container.root, ["peft"])
    with tarfile.open(fileobj=io.BytesIO(archive.read_bytes())) as tar:
        tar.extractall(container.code, filter="data")


def prepare_job(tmp_path: Path, container: Container) -> None:
    """What SageMaker does before the entry point runs: channels, config files, the source unpacked."""
    from local_backend.demo_model import create_demo_model

    train = write_chat_jsonl(tmp_path / "train.jsonl", 16)
    valid = write_chat_jsonl(tmp_path / "valid.jsonl", 4, start=100)
    container.channel("training", train)
    container.channel("validation", valid)
    create_demo_model(container.data / "model", data=[train, valid])
    hyperparameters = adapter_hyperparameters(tmp_path, hyperparameters={"max_steps": 3, "logging_steps": 1})
    (container.config / "hyperparameters.json").write_text(json.dumps(hyperparameters))
    (container.config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    unpack_source(container)


def test_the_packaged_entry_point_trains_and_writes_the_adapter(tmp_path: Path, container: Container) -> None:
    prepare_job(tmp_path, container)
    done = container.run(FTH_PROCESSES_PER_HOST="1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    adapter = json.loads((container.model / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    assert sorted(adapter["target_modules"]) == ["q_proj", "v_proj"]
    assert (container.model / "adapter_model.safetensors").stat().st_size > 0
    assert (container.model / "tokenizer_config.json").exists()
    summary = json.loads((container.output / "data" / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["step"] == 3 and summary["val_loss"] is not None
    config = json.loads((container.output / "data" / "config.json").read_text())
    assert config["model"] == str(container.data / "model") and config["run_name"] == "fth-test-job"
    assert (config["learning_rate"], config["batch_size"], config["seed"]) == (5e-3, 4, 3)
    assert not (container.output / "failure").exists()
    # the trainer's log lines are what the job's MetricDefinitions turn into SageMaker metrics
    import re

    for definition in req.METRIC_DEFINITIONS:
        assert re.search(definition["Regex"], done.stdout), definition


@pytest.mark.slow
def test_two_processes_under_torchrun_train_one_adapter(tmp_path: Path, container: Container) -> None:
    """The multi-GPU path, on CPU: the entry point re-launches itself with torchrun (gloo), rank 0 publishes."""
    prepare_job(tmp_path, container)
    done = container.run(FTH_PROCESSES_PER_HOST="2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "launching: " in done.stdout and "--nproc-per-node=2 --standalone" in done.stdout
    summary = json.loads((container.output / "data" / "summary.json").read_text())
    assert summary["status"] == "succeeded" and summary["step"] == summary["total_steps"]
    assert (container.model / "adapter_model.safetensors").exists()


def test_bad_hyperparameters_fail_with_a_reason_sagemaker_shows(
    tmp_path: Path, container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    container.channel("training", write_chat_jsonl(tmp_path / "train.jsonl", 4))
    (container.config / "hyperparameters.json").write_text(
        json.dumps({"model": '"demo"', "lora_rnak": "4", "sagemaker_program": '"x.py"'})
    )
    for key, value in container.env(FTH_PROCESSES_PER_HOST="1").items():
        monkeypatch.setenv(key, value)
    assert sagemaker_entry.main() == 2
    assert "lora_rnak (did you mean lora_rank?)" in (container.output / "failure").read_text()


def test_a_channel_must_hold_one_jsonl_file(tmp_path: Path, container: Container) -> None:
    (container.data / "training").mkdir(parents=True)
    (container.config / "hyperparameters.json").write_text(json.dumps({"model": '"demo"'}))
    with pytest.raises(sagemaker_entry.ConfigError, match=r"exactly one \.jsonl file; it holds nothing"):
        sagemaker_entry.build_config(container.env())


def test_hand_written_hyperparameters_are_read_as_given(container: Container) -> None:
    (container.config / "hyperparameters.json").write_text(
        json.dumps({"model": "org/model", "epochs": "2", "sagemaker_submit_directory": '"s3://b/c"'})
    )
    assert sagemaker_entry.read_hyperparameters(container.config) == {"model": "org/model", "epochs": 2}


def test_several_instances_or_gpus_run_under_torchrun(container: Container) -> None:
    resources = container.config / "resourceconfig.json"
    resources.write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    assert sagemaker_entry.launch_command(container.config, 1, "entry.py") is None
    assert sagemaker_entry.launch_command(container.config, 4, "entry.py")[-3:] == [
        "--nproc-per-node=4",
        "--standalone",
        "entry.py",
    ]
    resources.write_text(json.dumps({"current_host": "algo-2", "hosts": ["algo-1", "algo-2", "algo-3"]}))
    command = sagemaker_entry.launch_command(container.config, 8, "entry.py")
    assert command is not None and command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[3:] == [
        "--nproc-per-node=8",
        "--nnodes=3",
        "--node-rank=1",
        "--master-addr=algo-1",
        "--master-port=29500",
        "entry.py",
    ]
