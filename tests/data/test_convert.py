"""Exporters and the conversion report: Vertex, Azure, OpenAI pass-through, Gradient, atomic output."""

from __future__ import annotations

import gzip
import json
import random
import sys
from array import array
from pathlib import Path
from typing import Any

import pytest

from finetune_hub.data import ConversionError, convert, stats, validate
from finetune_hub.data.scan import ScanPlan, scan
from finetune_hub.data.validation import _repeats
from tests.data.conftest import chat, write_lines

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
        },
    }
]
TOOL_EXAMPLE = {
    "messages": [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "Paris and Rome?"},
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Rome"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
        {"role": "assistant", "content": "Paris is sunny, Rome rainy.", "weight": 1},
    ],
    "tools": TOOLS,
}


def many(record: dict[str, Any], n: int = 10) -> list[dict[str, Any]]:
    return [record] * n


def test_vertex_contents_system_instruction_and_function_calls(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "tools.jsonl", [TOOL_EXAMPLE])
    out = tmp_path / "vertex.jsonl"
    report = convert(source, to="vertex", out=out)
    (line,) = out.read_text().splitlines()
    assert json.loads(line) == {
        "systemInstruction": {"role": "system", "parts": [{"text": "You are a weather bot."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Paris and Rome?"}]},
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "weather", "response": {"content": "sunny"}}},
                    {"functionResponse": {"name": "weather", "response": {"content": "rain"}}},
                ],
            },
            {"role": "model", "parts": [{"text": "Paris is sunny, Rome rainy."}]},
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "weather",
                        "description": "Weather for a city",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
                        },
                    }
                ]
            }
        ],
    }
    assert set(report.change_counts) == {
        "vertex.role_renamed",
        "vertex.system_instruction",
        "vertex.tool_call_ids",
        "vertex.schema_types",
        "vertex.weight_dropped",
    }
    assert all("first at line 1" in c for c in report.changes)


def test_azure_output_has_a_bom_and_the_same_lines(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "d.jsonl", [chat(i) for i in range(12)])
    out = tmp_path / "azure.jsonl"
    report = convert(source, to="azure_openai", out=out)
    assert out.read_bytes() == b"\xef\xbb\xbf" + source.read_bytes()
    assert "azure.bom_added" in report.change_counts
    assert report.examples == 12
    assert validate(out, targets=["azure_openai"]).ok  # with the BOM, nothing to say about it


def test_azure_output_ends_the_last_line(tmp_path: Path) -> None:
    source = tmp_path / "d.jsonl"
    source.write_text("\n".join(json.dumps(chat(i)) for i in range(12)))  # no final newline
    out = tmp_path / "azure.jsonl"
    convert(source, to="azure_openai", out=out)
    assert out.read_bytes() == b"\xef\xbb\xbf" + source.read_bytes() + b"\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["azure.jsonl", "d.jsonl"]  # no staging left behind


def test_openai_pass_through_keeps_bytes_and_drops_blank_lines(tmp_path: Path) -> None:
    lines = [json.dumps(chat(i), ensure_ascii=False).replace("City", "Cité") for i in range(12)]
    source = tmp_path / "d.jsonl"
    source.write_text("\r\n".join(lines[:6]) + "\r\n\r\n" + "\n".join(lines[6:]), encoding="utf-8")  # no final newline
    out = tmp_path / "o.jsonl"
    report = convert(source, to="openai", out=out)
    assert out.read_bytes() == ("\r\n".join(lines[:6]) + "\r\n" + "\n".join(lines[6:]) + "\n").encode()
    assert report.change_counts == {"source.blank_lines_removed": 1}


def test_gradient_segments_train_only_weighted_assistant_turns(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello", "weight": 0},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Goodbye"},
        ]
    }
    out = tmp_path / "g.jsonl"
    convert(write_lines(tmp_path / "d.jsonl", [record]), to="gradient", out=out)
    sample = json.loads(out.read_text())
    assert [(s["value"], s["trainable"]) for s in sample["inputs"]] == [
        ("### User:\n", False),
        ("Hi", False),
        ("\n\n### Assistant:\n", False),
        ("Hello", False),
        ("\n\n### User:\n", False),
        ("Bye", False),
        ("\n\n### Assistant:\n", False),
        ("Goodbye", True),
    ]


def test_bad_data_leaves_an_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    source = write_lines(tmp_path / "d.jsonl", [*[chat(i) for i in range(12)], {"messages": []}])
    with pytest.raises(ConversionError) as caught:
        convert(source, to="openai", out=out)
    assert caught.value.findings[0].rule == "missing_messages_list" and caught.value.findings[0].line == 13
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "o.jsonl"]


def test_vertex_refuses_what_it_cannot_express(tmp_path: Path) -> None:
    late_system = {
        "messages": [*chat(1)["messages"], {"role": "system", "content": "Now French."}, *chat(2)["messages"][1:]]
    }
    source = write_lines(tmp_path / "d.jsonl", [late_system])
    with pytest.raises(ConversionError) as caught:
        convert(source, to="vertex", out=tmp_path / "v.jsonl")
    assert caught.value.findings[0].rule == "vertex.system_not_first"


def test_parallel_scan_matches_one_process(tmp_path: Path) -> None:
    records: list[Any] = [chat(i) for i in range(3000)]
    records[1234] = {"messages": [{"role": "user", "content": "no reply"}]}
    records[2500] = chat(7)  # a duplicate of line 8
    source = write_lines(tmp_path / "d.jsonl", records)
    plan = ScanPlan(path=source, container="jsonl", fmt="openai_chat", display=str(source), export_to="vertex")
    (tmp_path / "one").mkdir()
    (tmp_path / "four").mkdir()
    one = scan(plan, out_dir=tmp_path / "one", workers=1)
    four = scan(plan, out_dir=tmp_path / "four", workers=4)
    assert len(four.parts) > 1
    assert [(f.rule, f.line) for f in four.findings.sorted()] == [(f.rule, f.line) for f in one.findings.sorted()]
    assert ("example_missing_assistant_message", 1235) in [(f.rule, f.line) for f in one.findings.sorted()]
    assert four.token_counts == one.token_counts and four.example_lines == one.example_lines
    assert b"".join(p.read_bytes() for p in four.parts) == one.parts[0].read_bytes()
    assert four.change_lines == one.change_lines and four.findings.counts == one.findings.counts


def test_stats_roles_and_distribution(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "d.jsonl", [chat(i) for i in range(10)] + [TOOL_EXAMPLE])
    result = stats(source, model="gpt-4o")
    assert result.examples == 11 and result.messages == 36
    assert result.role_counts == {"system": 11, "user": 11, "assistant": 12, "tool": 2}
    assert len(result.token_counts) == 11 and result.max_tokens == max(result.token_counts)
    assert result.quantiles(0.0, 1.0) == [min(result.token_counts), result.max_tokens]
    assert not result.exact and "approximate" in result.counter


def test_import_losses_are_reported_field_by_field(tmp_path: Path) -> None:
    vertex_line = {
        "system_instruction": {"parts": [{"text": "Be brief."}]},  # the snake_case spelling is read too
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"id": "f1", "name": "weather", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"content": "sunny"}}}]},
            {"role": "model", "parts": [{"text": "Sunny.", "thought": False}]},
        ],
        "generationConfig": {"temperature": 0.2},
    }
    source = write_lines(tmp_path / "v.jsonl", [vertex_line] * 3)
    report = convert(source, to="local", out=tmp_path / "o.jsonl")
    canonical = json.loads((tmp_path / "o.jsonl").read_text().splitlines()[0])
    assert canonical["messages"][0] == {"role": "system", "content": "Be brief."}
    assert {
        "source.field_dropped:generationConfig": 3,
        "source.field_dropped:contents[].parts[].functionCall.id": 3,
        "source.field_dropped:contents[].parts[].thought": 3,
        "source.tool_call_ids_generated": 3,
    }.items() <= report.change_counts.items()
    said = "source field 'generationConfig' dropped (nothing in OpenAI chat JSONL holds it)"
    assert f"{said} — 3 example(s); first at line 1, 2, 3" in report.changes

    alpaca = [{"instruction": f"Add {i} and 1.", "output": str(i + 1), "category": "math"} for i in range(5)]
    report = convert(write_lines(tmp_path / "a.jsonl", alpaca), to="local", out=tmp_path / "a_out.jsonl")
    assert report.change_counts["source.field_dropped:category"] == 5


def test_dropped_field_names_from_the_data_are_capped(tmp_path: Path) -> None:
    rows = [{"instruction": "Say hi.", "output": "Hi.", f"extra_{i}": 1} for i in range(150)]
    report = convert(write_lines(tmp_path / "a.jsonl", rows), to="local", out=tmp_path / "o.jsonl")
    assert len(report.change_counts) <= 102  # 100 kinds, the overflow bucket, source.imported
    assert report.change_counts["source.field_dropped:(other fields)"] == 150 - 100


@pytest.mark.parametrize("workers", [1, 2])
def test_pass_through_copies_the_file_whole_and_ends_it_with_a_newline(tmp_path: Path, workers: int) -> None:
    lines = [json.dumps(chat(i)) for i in range(40)]
    source = tmp_path / "d.jsonl"
    source.write_text("\n".join(lines))  # no final newline
    out = tmp_path / "o.jsonl"
    report = convert(source, to="local", out=out, workers=workers)
    assert out.read_text() == "\n".join(lines) + "\n"
    assert report.examples == 40 and report.change_counts == {}


def test_legacy_function_calls_become_vertex_function_parts(tmp_path: Path) -> None:
    legacy = {
        "messages": [
            {"role": "system", "content": "You are a weather bot."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "function_call": {"name": "weather", "arguments": '{"city": "Paris"}'},
            },
            {"role": "function", "name": "weather", "content": "sunny"},
            {"role": "assistant", "content": "Sunny in Paris."},
        ],
        "functions": [{"name": "weather", "parameters": {"type": "object"}}],
    }
    out = tmp_path / "v.jsonl"
    report = convert(write_lines(tmp_path / "legacy.jsonl", many(legacy)), to="vertex", out=out)
    contents = json.loads(out.read_text().splitlines()[0])["contents"]
    assert contents[1:3] == [
        {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "weather", "response": {"content": "sunny"}}}]},
    ]
    assert report.change_counts["vertex.legacy_functions"] == 10
    assert "vertex.name_dropped" not in report.change_counts and "vertex.fields_dropped" not in report.change_counts
    tools = json.loads(out.read_text().splitlines()[0])["tools"]
    assert tools == [{"functionDeclarations": [{"name": "weather", "parameters": {"type": "OBJECT"}}]}]
    rules = {f.rule for f in validate(tmp_path / "legacy.jsonl", targets=["vertex"]).findings}
    assert "platform.feature_dropped" not in rules  # nothing is dropped, so the validator says nothing


def test_validate_notes_the_fields_a_conversion_would_drop(tmp_path: Path) -> None:
    rows = [{"instruction": f"Add {i} and 1.", "output": str(i + 1), "category": "math"} for i in range(5)]
    report = validate(write_lines(tmp_path / "a.jsonl", rows), targets=["openai"])
    assert report.counts["format.field_dropped"] == 5
    first = next(f for f in report.findings if f.rule == "format.field_dropped")
    assert (first.line, first.severity) == (1, "info") and first.message.startswith("category:")


@pytest.mark.parametrize("numpy", [True, False])
def test_repeats_name_each_repeat_and_its_first_occurrence(monkeypatch: pytest.MonkeyPatch, numpy: bool) -> None:
    if not numpy:
        monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` raises ImportError: the fallback path
    values = array("Q", [7, 2**64 - 1, 7, 3, 2**64 - 1, 7, 5])
    assert sorted(_repeats(values)) == [(2, 0), (4, 1), (5, 0)]
    assert list(_repeats(array("Q", [1, 2, 3]))) == [] and list(_repeats(array("Q"))) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_reports_every_byte_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    monkeypatch.setattr("finetune_hub.data.scan._RANGE_BYTES", 1 << 20)  # several ranges from a small file
    source = write_lines(tmp_path / "d.jsonl", [chat(i % 5000) for i in range(40_000)])  # one process: every 16,384
    plan = ScanPlan(path=source, container="jsonl", fmt="openai_chat", display=str(source))
    steps: list[int] = []
    result = scan(plan, workers=workers, progress=steps.append)
    assert len(steps) > 2 and sum(steps) == source.stat().st_size
    assert result.examples == 40_000 and list(result.example_lines) == list(range(1, 40_001))


def test_stats_progress_covers_a_table_in_one_step(tmp_path: Path) -> None:
    source = tmp_path / "d.csv"
    source.write_text("prompt,completion\nhi,hello\nbye,goodbye\n")
    steps: list[int] = []
    assert stats(source, progress=steps.append).examples == 2
    assert steps == [source.stat().st_size]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_utf16_or_gzip_file_is_one_finding_however_it_is_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr("finetune_hub.data.scan._RANGE_BYTES", 50_000)
    source = tmp_path / "d.jsonl"
    source.write_text("".join(json.dumps(chat(i)) + "\n" for i in range(2000)), encoding="utf-16")
    report = validate(source, workers=workers)
    assert report.counts == {"encoding.utf16": 1} and report.errors == 1
    packed = tmp_path / "d.jsonl.gz"
    for seed in range(40):  # incompressible: several ranges; some such bytes hold a line that parses as JSON
        packed.write_bytes(gzip.compress(random.Random(seed).randbytes(300_000)))
        report = validate(packed, workers=workers)
        assert report.counts == {"file.compressed": 1} and report.errors == 1, seed


def test_change_kinds_are_capped_per_file_not_per_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("finetune_hub.data.scan._RANGE_BYTES", 2_000)
    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    source = write_lines(tmp_path / "d.jsonl", [{"conversations": turns, f"extra{i}": 1} for i in range(400)])
    plan = ScanPlan(path=source, container="jsonl", fmt="sharegpt", display=str(source), export_to="openai")
    results = []
    for workers in (1, 2):
        (tmp_path / str(workers)).mkdir()
        results.append(scan(plan, out_dir=tmp_path / str(workers), workers=workers))
    one, two = results
    assert len(two.parts) > 2 and len(one.changes) <= 101
    assert two.changes == one.changes and two.change_lines == one.change_lines
    assert one.changes["source.field_dropped:(other fields)"] > 250


def test_a_lone_surrogate_that_reaches_the_writer_is_a_finding_not_invalid_utf8(tmp_path: Path) -> None:
    from finetune_hub.data.scan import scan_rows

    bad = {"messages": [{"role": "user", "content": "bad \ud800"}, {"role": "assistant", "content": "ok"}]}
    plan = ScanPlan(path=tmp_path / "rows", container="parquet", fmt="openai_chat", display="rows", export_to="vertex")
    result = scan_rows(plan, [(1, chat(1)), (2, bad)], tmp_path)
    assert result.findings.counts["encoding.lone_surrogate"] == 1 and result.written == 1
    (part,) = result.parts
    part.read_bytes().decode("utf-8")  # what was written is UTF-8


def test_a_validation_split_keeps_gs_images_for_the_platforms_that_read_them(tmp_path: Path) -> None:
    from finetune_hub.data import split_validation

    image = {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}}
    source = write_lines(
        tmp_path / "d.jsonl",
        [
            {"messages": [{"role": "user", "content": [image]}, {"role": "assistant", "content": f"Cat {i}."}]}
            for i in range(12)
        ],
    )
    train, valid = split_validation(source, 0.25, seed=1, out_dir=tmp_path / "splits")
    assert len(train.read_text().splitlines()) == 9 and "gs://bucket/cat.png" in valid.read_text()
    assert validate(train, targets=["vertex"]).counts.get("vertex.image_not_gcs") is None
    assert validate(train, targets=["openai"]).counts["openai.image_url"] == 9  # OpenAI would fetch none of them
