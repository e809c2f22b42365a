"""The trainer's entry point inside a SageMaker training job (the DLC's training toolkit runs this file).

It reads what SageMaker hands the container and maps it onto a TrainConfig:

    hyperparameters   $SM_INPUT_CONFIG_DIR/hyperparameters.json   (default /opt/ml/input/config), values
                      JSON-encoded by the adapter, names = TrainConfig fields
    hosts             $SM_INPUT_CONFIG_DIR/resourceconfig.json     ({"current_host", "hosts"})
    training data     $SM_CHANNEL_TRAINING     (one .jsonl file, OpenAI chat format)
    validation data   $SM_CHANNEL_VALIDATION   (optional)
    base model        $SM_CHANNEL_MODEL        (optional: weights from S3 instead of the Hub id)
    run directory     $FTH_CHECKPOINT_DIR      (default /opt/ml/checkpoints, synced to S3: spot restarts resume)
    model output      $SM_MODEL_DIR            (default /opt/ml/model: the adapter files, uploaded as model.tar.gz)
    other output      $SM_OUTPUT_DATA_DIR      (default /opt/ml/output/data: summary.json, events.jsonl)
    failure reason    $SM_OUTPUT_DIR/failure   (default /opt/ml/output; SageMaker shows it as FailureReason)

More than one instance or GPU: the entry point re-launches itself under torchrun (one process per GPU,
one node per instance, rank 0 on the first host). Every path can be pointed elsewhere through the same
variables, which is how the tests run it on a laptop exactly as the container does.

Exit codes: 0 trained, 1 failed or stopped early, 2 bad hyperparameters or data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (the toolkit's `python local_backend/sagemaker_entry.py`)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_backend.config import ConfigError, TrainConfig

MASTER_PORT = "29500"
#: hyperparameters that belong to SageMaker or its toolkit, not to the trainer
_PLATFORM_PREFIXES = ("sagemaker_", "_tuning")


def _env_path(name: str, default: str) -> Path:
    return Path(os.environ.get(name) or default)


def read_hyperparameters(config_dir: Path) -> dict[str, Any]:
    """The trainer's values from hyperparameters.json (strings SageMaker wrote; JSON-decoded where they parse)."""
    path = config_dir / "hyperparameters.json"
    raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    values = {}
    for key, value in raw.items():
        if key.startswith(_PLATFORM_PREFIXES):
            continue
        try:
            values[key] = json.loads(value) if isinstance(value, str) else value
        except json.JSONDecodeError:
            values[key] = value  # a bare string, as written by hand in the console
    return values


def channel_file(channel: Path, name: str) -> str:
    """The one .jsonl file SageMaker downloaded into a channel directory."""
    found = sorted(p for p in channel.rglob("*.jsonl") if p.is_file()) if channel.is_dir() else []
    if len(found) != 1:
        listing = ", ".join(p.name for p in found) or "nothing"
        raise ConfigError(f"channel '{name}' ({channel}) must hold exactly one .jsonl file; it holds {listing}")
    return str(found[0])


def build_config(environ: dict[str, str] | None = None) -> TrainConfig:
    """The TrainConfig for this container: hyperparameters plus the paths SageMaker mounted."""
    env = os.environ if environ is None else environ
    config_dir = Path(env.get("SM_INPUT_CONFIG_DIR") or "/opt/ml/input/config")
    values = read_hyperparameters(config_dir)
    data_dir = Path(env.get("SM_INPUT_DATA_DIR") or "/opt/ml/input/data")
    training = Path(env.get("SM_CHANNEL_TRAINING") or data_dir / "training")
    validation = Path(env.get("SM_CHANNEL_VALIDATION") or data_dir / "validation")
    model = Path(env.get("SM_CHANNEL_MODEL") or data_dir / "model")
    values["train_file"] = channel_file(training, "training")
    if validation.is_dir():
        values["validation_file"] = channel_file(validation, "validation")
    if model.is_dir():
        values["model"] = str(model)
    values["output_dir"] = env.get("FTH_CHECKPOINT_DIR") or "/opt/ml/checkpoints"
    values.setdefault("run_name", env.get("TRAINING_JOB_NAME"))
    return TrainConfig.from_dict(values)


def launch_command(config_dir: Path, gpus: int, script: str) -> list[str] | None:
    """The torchrun command that runs this script once per GPU on every instance, or None for one process."""
    path = config_dir / "resourceconfig.json"
    resources = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    hosts = resources.get("hosts") or ["algo-1"]
    current = resources.get("current_host") or hosts[0]
    per_host = max(gpus, 1)
    if len(hosts) * per_host <= 1:
        return None
    torchrun = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={per_host}"]
    if len(hosts) == 1:  # one instance: a local rendezvous on a free port
        return [*torchrun, "--standalone", script]
    port = os.environ.get("MASTER_PORT", MASTER_PORT)
    nodes = [f"--nnodes={len(hosts)}", f"--node-rank={hosts.index(current)}", f"--master-addr={hosts[0]}"]
    return [*torchrun, *nodes, f"--master-port={port}", script]


def _gpus() -> int:
    if forced := os.environ.get("FTH_PROCESSES_PER_HOST"):  # e.g. CPU processes in tests
        return int(forced)
    import torch

    return torch.cuda.device_count()


def publish(run_dir: Path, model_dir: Path, output_dir: Path) -> None:
    """Put the adapter where SageMaker uploads the model, and the run's records beside the output."""
    adapter = run_dir / "adapter"
    model_dir.mkdir(parents=True, exist_ok=True)
    for item in adapter.iterdir():
        target = model_dir / item.name
        (shutil.copytree(item, target, dirs_exist_ok=True) if item.is_dir() else shutil.copy2(item, target))
    if (run_dir / "merged").is_dir():
        shutil.copytree(run_dir / "merged", model_dir / "merged", dirs_exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "events.jsonl", "config.json", "sample.txt"):
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, output_dir / name)


def _fail(message: str) -> None:
    """Tell SageMaker why (it reports the first 1 KB of this file as the job's FailureReason)."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    out = _env_path("SM_OUTPUT_DIR", "/opt/ml/output")
    out.mkdir(parents=True, exist_ok=True)
    (out / "failure").write_text(message[:1024], encoding="utf-8")


def main() -> int:
    config_dir = _env_path("SM_INPUT_CONFIG_DIR", "/opt/ml/input/config")
    if "LOCAL_RANK" not in os.environ and (command := launch_command(config_dir, _gpus(), __file__)):
        print("launching: " + " ".join(command), flush=True)
        os.execv(command[0], command)
    from local_backend.data import DataError

    try:
        config = build_config()
    except (ConfigError, OSError, json.JSONDecodeError) as exc:
        _fail(f"bad hyperparameters or input channels: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from local_backend.train import train

        summary = train(config)
    except (ConfigError, DataError) as exc:
        _fail(f"{type(exc).__name__}: {exc}")
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        _fail(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if summary.get("status") != "succeeded":
        _fail(f"training stopped early ({summary.get('status')}) at step {summary.get('step')}")
        return 1
    run_dir = Path(config.output_dir)
    publish(run_dir, _env_path("SM_MODEL_DIR", "/opt/ml/model"), _env_path("SM_OUTPUT_DATA_DIR", "/opt/ml/output/data"))
    print(f"adapter written to {os.environ.get('SM_MODEL_DIR', '/opt/ml/model')}", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    from local_backend.train import exit_process

    exit_process(code)
