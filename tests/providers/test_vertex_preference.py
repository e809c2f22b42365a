"""Preference tuning (`method: dpo`) on Vertex, end to end against the emulators: the spec's DPO pairs are
converted to Google's preference format, uploaded once, and sent as exactly one PREFERENCE_TUNING job
(`preferenceOptimizationSpec`, the body the real google-genai client writes) carrying that file and beta."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune_hub import api, data
from finetune_hub.errors import ConfigError
from finetune_hub.records import Capability
from finetune_hub.spec import FineTuneSpec
from finetune_hub.store import JobStore
from providers.vertex import VertexJob
from tests.conformance.bind_vertex import LOCATION, PROJECT, vertex_client
from tests.conftest import write_chat_jsonl
from tests.emulators.vertex_server import VertexStack


def pair(i: int) -> dict[str, Any]:
    return {
        "input": {
            "messages": [
                {"role": "system", "content": "You answer with the capital city only."},
                {"role": "user", "content": f"Capital of country number {i}?"},
            ]
        },
        "preferred_output": [{"role": "assistant", "content": f"City {i}"}],
        "non_preferred_output": [{"role": "assistant", "content": f"I think it might be city {i}, or not."}],
    }


def write_pairs(path: Path, n: int, start: int = 0, changes: dict[str, Any] | None = None) -> Path:
    path.write_text(
        "".join(json.dumps(pair(i) | (changes or {})) + "\n" for i in range(start, start + n)), encoding="utf-8"
    )
    return path


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[VertexStack]:
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "FTH_VERTEX_BUCKET", "GOOGLE_VERTEX_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    running = VertexStack().start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", running.storage_url)
    yield running
    running.stop()


def make_spec(train: Path, validation: Path | None, stack: VertexStack, method: str = "dpo") -> FineTuneSpec:
    return FineTuneSpec.from_dict(
        {
            "name": "capitals-dpo",
            "method": method,
            "base_model": {"vertex": "gemini-2.5-flash"},
            "data": {"train": str(train), "validation": str(validation) if validation else None},
            "hyperparameters": {"epochs": 2, "learning_rate_multiplier": 0.5, "beta": 0.2},
            "lora": {"rank": 4},
            "providers": {"vertex": {"project": PROJECT, "location": LOCATION, "bucket": stack.bucket}},
        }
    )


def converted_uri(source: Path, stack: VertexStack) -> str:
    """Where prepare() puts a file: the Vertex conversion, named by its content hash."""
    out = source.with_suffix(".vertex.jsonl")
    data.convert(source, to="vertex", out=out)
    return f"gs://{stack.bucket}/finetune-hub/{data.content_hash(out)}.jsonl"


def test_dpo_submits_one_preference_tuning_job_with_the_converted_pairs_and_beta(
    tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    assert VertexJob.supports(Capability.DPO)
    train, valid = write_pairs(tmp_path / "train.jsonl", 12), write_pairs(tmp_path / "valid.jsonl", 4, start=50)
    spec = make_spec(train, valid, stack)
    assert not [p for p in api.plan(spec, "vertex").problems if p.severity == "error"]

    job = api.submit(spec, "vertex", store=store, client=vertex_client(stack))

    record = store.get(job.local_id or "")
    train_uri, valid_uri = converted_uri(train, stack), converted_uri(valid, stack)
    (body,) = stack.vertex.created
    assert body["baseModel"] == "gemini-2.5-flash" and "supervisedTuningSpec" not in body
    assert body["preferenceOptimizationSpec"] == {
        "trainingDatasetUri": train_uri,
        "validationDatasetUri": valid_uri,
        "hyperParameters": {
            "epochCount": 2,
            "learningRateMultiplier": 0.5,
            "adapterSize": "ADAPTER_SIZE_FOUR",
            "beta": 0.2,
        },
    }
    assert body["labels"]["fth-key"] == record.idempotency_key
    assert stack.uploads() == 2 and len(stack.vertex.jobs) == 1
    uploaded = [json.loads(line) for line in stack.read(train_uri).decode().splitlines()]
    assert len(uploaded) == 12
    assert uploaded[3] == {
        "system_instruction": {"parts": [{"text": "You answer with the capital city only."}]},
        "contents": [{"role": "user", "parts": [{"text": "Capital of country number 3?"}]}],
        "completions": [
            {"score": 1, "completion": {"role": "model", "parts": [{"text": "City 3"}]}},
            {"score": 0, "completion": {"role": "model", "parts": [{"text": "I think it might be city 3, or not."}]}},
        ],
    }

    stack.vertex.advance(record.remote_id or "", "succeeded")
    result = job.result()
    assert result.extra["epochs"] == 2 and result.trained_tokens == 2 * stack.vertex.billable_tokens
    assert result.extra["tuning_data_stats"]["tuning_dataset_example_count"] == 12  # preferenceOptimizationDataStats


def test_prepare_reports_what_the_conversion_dropped(tmp_path: Path, stack: VertexStack, store: JobStore) -> None:
    train = write_pairs(tmp_path / "train.jsonl", 12, changes={"metadata": {"annotator": "a"}})
    job = api.make_job("vertex", make_spec(train, None, stack), store=store, client=vertex_client(stack))
    report = "\n".join(job.prepare().report)
    assert "train: leading system messages moved to 'system_instruction'" in report
    assert "train: fields besides the prompt and the two outputs dropped" in report


@pytest.mark.parametrize(
    ("method", "kind", "says"),
    [
        ("dpo", "chat", "vertex: method dpo, but"),
        ("sft", "pairs", "holds preference pairs; method is sft"),
        ("dpo", "pairs ending with a model turn", "[vertex.preference_last_turn]"),
    ],
)
def test_method_and_data_must_agree_before_anything_is_sent(
    method: str, kind: str, says: str, tmp_path: Path, stack: VertexStack, store: JobStore
) -> None:
    train = tmp_path / "train.jsonl"
    if kind == "chat":
        write_chat_jsonl(train, 12)
    else:
        last = [{"role": "user", "content": "Capital?"}, {"role": "assistant", "content": "Which country?"}]
        write_pairs(train, 12, changes={"input": {"messages": last}} if "model turn" in kind else None)
    spec = make_spec(train, None, stack, method=method)
    with pytest.raises(ConfigError) as caught:
        api.submit(spec, "vertex", store=store, client=vertex_client(stack))
    assert says in caught.value.message and "nothing was uploaded" in (caught.value.hint or "")
    assert stack.uploads() == 0 and stack.vertex.created == []
