from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_hub.store import JobStore

SHARED = Path(__file__).resolve().parents[2] / "shared"


def no_sleep(_: float) -> None:
    """Stands in for time.sleep where a test drives the clock itself."""


@pytest.fixture
def store(tmp_path: Path) -> JobStore:
    """A job store of the test's own (for tests that pass one explicitly)."""
    return JobStore(tmp_path / "jobs.db")


@pytest.fixture(autouse=True)
def fth_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own job store and state directory."""
    home = tmp_path / "fth-home"
    monkeypatch.setenv("FTH_HOME", str(home))
    return home


def chat_example(i: int) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "You answer with the capital city only."},
            {"role": "user", "content": f"Capital of country number {i}?"},
            {"role": "assistant", "content": f"City {i}"},
        ]
    }


def write_chat_jsonl(path: Path, n: int = 12, start: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps(chat_example(i)) + "\n")
    return path


def write_dpo_jsonl(path: Path, n: int = 12, start: int = 0) -> Path:
    """OpenAI DPO preference pairs: the chat examples' prompts, their answers preferred over a curt one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            *prompt, answer = chat_example(i)["messages"]
            pair = {"input": {"messages": prompt}, "preferred_output": [answer],
                    "non_preferred_output": [{"role": "assistant", "content": "No idea."}]}  # fmt: skip
            fh.write(json.dumps(pair) + "\n")
    return path


def exit_code(argv: list[str]) -> int:
    """What `fth ARGV` exits with: main()'s return, or argparse's own exit on a bad option."""
    from finetune_hub.cli import main

    try:
        return main(argv)
    except SystemExit as stopped:
        return int(stopped.code or 0)
