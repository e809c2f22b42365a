"""`fth compare` over a job on the OpenAI emulator and a job trained by the local backend (a tiny model built
in the test, trained on CPU), with held-out answers from both, in all three report formats."""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("peft")
pytest.importorskip("openai")

from finetune_hub import api
from finetune_hub.cli import main
from finetune_hub.spec import FineTuneSpec
from tests.conftest import chat_example, write_chat_jsonl
from tests.emulators.openai_server import OpenAIEmulator

SECRET = "emulator-secret-0123456789abcdef"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIEmulator]:
    emu = OpenAIEmulator(api_key=SECRET).start()
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", emu.url + "/v1")
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("FTH_TODAY", "2026-11-27")
    yield emu
    emu.stop()


@pytest.mark.slow
def test_compare_emulator_and_local_jobs(
    emulator: OpenAIEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conformance.bind_local import demo_model

    train = write_chat_jsonl(tmp_path / "train.jsonl", n=12)
    valid = write_chat_jsonl(tmp_path / "valid.jsonl", n=10, start=100)
    spec = FineTuneSpec.model_validate(
        {
            "name": "capitals",
            "base_model": {"openai": "gpt-4o-mini-2024-07-18", "local": str(demo_model())},
            "data": {"train": str(train), "validation": str(valid)},
            "hyperparameters": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-3},
            "lora": {"rank": 4, "dropout": 0.0},
            "seed": 1,
            "providers": {
                "openai": {"request_timeout": 1.0},
                "local": {"runs_dir": str(tmp_path / "runs"), "eval_steps": 3, "save_steps": 100},
            },
        }
    )
    openai_job = api.submit(spec.model_copy(update={"hyperparameters": spec.hyperparameters.model_copy(
        update={"batch_size": None, "learning_rate": None})}), "openai")  # fmt: skip
    emulator.advance(openai_job.remote_id, "succeeded")
    openai_job.sync()
    local_job = api.submit(spec, "local")
    assert local_job.record is not None and local_job.record.estimated_usd == 0.0
    local_job.wait(timeout=240, sleep=lambda _: time.sleep(0.2))
    assert local_job.record.status.value == "succeeded", local_job.record.error
    assert local_job.record.actual_usd == 0.0

    held = tmp_path / "held.jsonl"
    # one prompt: the local adapter's predict loads the model and generates on CPU (about a minute here)
    held.write_text("".join(json.dumps(chat_example(i)) + "\n" for i in (0, 3, 7)))
    out = tmp_path / "report"
    ids = [openai_job.local_id, local_job.local_id]
    argv = ["compare", *ids, "--eval", str(held), "--limit", "1", "-m", "exact", "-m", "rouge-l", "--json"]
    assert (
        main([*argv, "--report", str(out / "c.html"), "--report", str(out / "c.md"), "--report", str(out / "c.json")])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    by_provider = {j["provider"]: j for j in shown["jobs"]}
    assert by_provider["local"]["curves"]["train_loss"] and by_provider["local"]["final"]["train_loss"] > 0
    assert by_provider["openai"]["actual_usd"] > 0
    evaluations = {e["provider"]: e for e in shown["evaluations"]}
    assert evaluations["openai"]["scores"]["exact"] == 1.0
    assert evaluations["local"]["answered"] == 1 and 0.0 <= evaluations["local"]["scores"]["rouge-l"] <= 1.0

    html = (out / "c.html").read_text()
    svgs = re.findall(r"<svg.*?</svg>", html, flags=re.S)
    assert len(svgs) == 3 and all(ET.fromstring(s).tag.endswith("svg") for s in svgs)
    md = (out / "c.md").read_text()
    assert openai_job.local_id in md and local_job.local_id in md
    assert json.loads((out / "c.json").read_text())["jobs"][1]["provider"] == "local"
