"""`plan()` turns data findings into Problems: errors block, warnings do not (the OpenAI adapter, offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune_hub import api
from finetune_hub.spec import FineTuneSpec
from tests.data.conftest import chat, write_lines

pytest.importorskip("openai")


def spec_for(train: Path, validation: Path | None = None) -> FineTuneSpec:
    return FineTuneSpec.model_validate(
        {
            "name": "plan-test",
            "base_model": {"openai": "gpt-4o-mini-2024-07-18"},
            "data": {"train": str(train), "validation": str(validation) if validation else None},
        }
    )


def test_data_errors_become_blocking_problems_with_file_and_line(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", [*[chat(i) for i in range(12)], '{"messages": ['])
    planned = api.plan(spec_for(train), "openai")
    errors = [p for p in planned.problems if p.severity == "error"]
    assert any(f"{train}:13: [json.invalid]" in p.message for p in errors)
    assert all(p.hint for p in errors)  # the fix travels as the hint
    assert planned.estimate is None


def test_warnings_do_not_block_and_overlap_is_checked(tmp_path: Path) -> None:
    train = write_lines(tmp_path / "train.jsonl", [chat(i) for i in range(12)] + [chat(0)])
    validation = write_lines(tmp_path / "val.jsonl", [chat(50), chat(51)])
    planned = api.plan(spec_for(train, validation), "openai")
    assert [p.severity for p in planned.problems if "[duplicate_example]" in p.message] == ["warning"]
    assert planned.estimate is not None

    leaky = write_lines(tmp_path / "leaky.jsonl", [chat(3)])
    planned = api.plan(spec_for(train, leaky), "openai")
    assert any("[train_validation_overlap]" in p.message and p.severity == "error" for p in planned.problems)
