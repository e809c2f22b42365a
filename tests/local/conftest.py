"""Tiny demo models and chat data for the local trainer's tests, built once per session, offline."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")


@pytest.fixture(scope="session", autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy 2-core machine threads fight (10x slower)."""
    import torch

    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # for the trainer subprocesses the tests start
    yield
    torch.set_num_threads(threads)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa", "lambda", "sigma", "omega"]


def conversation(i: int) -> dict[str, Any]:
    """Varied lengths and shapes: optional system prompt, 1-3 turns, some untrained (weight 0) replies."""
    rng = random.Random(i)
    messages: list[dict[str, Any]] = []
    if i % 3:
        messages.append({"role": "system", "content": "You repeat the words you are given, in reverse order."})
    for turn in range(1 + i % 3):
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 6 + 2 * turn))]
        messages.append({"role": "user", "content": "reverse: " + " ".join(words)})
        reply: dict[str, Any] = {"role": "assistant", "content": " ".join(reversed(words))}
        if turn == 0 and i % 4 == 3 and i % 3:  # a later turn is still trained
            reply["weight"] = 0
        messages.append(reply)
    return {"messages": messages}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def chat_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("chat")
    train = write_jsonl(root / "train.jsonl", [conversation(i) for i in range(48)])
    valid = write_jsonl(root / "valid.jsonl", [conversation(i) for i in range(1000, 1012)])
    return train, valid


def _model(tmp_path_factory: pytest.TempPathFactory, chat_data: tuple[Path, Path], arch: str) -> Path:
    from local_backend.demo_model import create_demo_model

    # head_dim 16: the CUDA varlen kernel needs multiples of 8
    out = tmp_path_factory.mktemp(f"demo-{arch}") / "model"
    return create_demo_model(out, data=chat_data, arch=arch, vocab_size=320, hidden=64, layers=2, heads=4, kv_heads=2)


@pytest.fixture(scope="session")
def llama_model(tmp_path_factory: pytest.TempPathFactory, chat_data: tuple[Path, Path]) -> Path:
    return _model(tmp_path_factory, chat_data, "llama")


@pytest.fixture(scope="session")
def qwen_model(tmp_path_factory: pytest.TempPathFactory, chat_data: tuple[Path, Path]) -> Path:
    return _model(tmp_path_factory, chat_data, "qwen2")


@pytest.fixture(params=["llama", "qwen2"])
def any_model(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("llama_model" if request.param == "llama" else "qwen_model")
