from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import write_chat_jsonl

#: one base model per platform the catalog prices (sizes in the ids, so runtimes can be predicted)
BASE_MODELS = {
    "openai": "gpt-4o-mini-2024-07-18",
    "azure_openai": "gpt-4.1-2025-04-14",
    "vertex": "gemini-2.5-flash",
    "sagemaker": "meta-llama/Llama-3.2-1B-Instruct",
    "local": "Qwen/Qwen2.5-0.5B-Instruct",
}


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    """A spec over 30 chat examples, with a base model for every platform and 2 epochs."""
    write_chat_jsonl(tmp_path / "data" / "train.jsonl", n=30)
    spec = {
        "name": "cost-test",
        "base_model": BASE_MODELS,
        "data": {"train": "data/train.jsonl"},
        "hyperparameters": {"epochs": 2},
        "providers": {"sagemaker": {"instance_type": "ml.g5.12xlarge", "instance_count": 2}},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path
