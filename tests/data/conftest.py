from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def offline_tokenizers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never download a tokenizer: tiktoken only finds what is in an empty cache, so counts fall back
    to the labelled approximation unless a test builds its own encoding."""
    monkeypatch.setenv("FTH_OFFLINE", "1")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "no-tiktoken-cache"))
    from finetune_hub.data import scan

    scan._counter.cache_clear()


def chat(i: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": "You answer with the capital city only."},
            {"role": "user", "content": f"Capital of country number {i}?"},
            {"role": "assistant", "content": f"City {i}"},
        ],
        **extra,
    }


def write_lines(path: Path, lines: list[Any]) -> Path:
    """Each item: a dict (dumped as JSON), a str (written as is) or bytes; one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        for item in lines:
            if isinstance(item, bytes):
                fh.write(item + b"\n")
            elif isinstance(item, str):
                fh.write(item.encode() + b"\n")
            else:
                fh.write(json.dumps(item).encode() + b"\n")
    return path
