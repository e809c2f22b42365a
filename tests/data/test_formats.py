"""Readers and detection: every supported format reads into the same canonical chat records."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from finetune_hub.data import convert, stats, validate
from finetune_hub.data.detect import detect
from finetune_hub.data.findings import RecordError
from tests.data.conftest import write_lines

EXPECTED = [
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8-sig").splitlines()]


def as_openai(tmp_path: Path, source: Path, **options: Any) -> list[dict[str, Any]]:
    out = tmp_path / "out.jsonl"
    convert(source, to="local", out=out, **options)  # local reads OpenAI chat JSONL and needs no minimum
    return read_jsonl(out)


@pytest.mark.parametrize(
    ("name", "record", "fmt"),
    [
        ("alpaca", {"instruction": "Name a colour.", "input": "", "output": "Blue."}, "alpaca"),
        (
            "sharegpt",
            {"conversations": [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "Blue."}]},
            "sharegpt",
        ),
        ("hf_chat", {"conversations": EXPECTED}, "hf_chat"),
        ("prompt_completion", {"prompt": "Name a colour.", "completion": "Blue."}, "prompt_completion"),
        ("jumpstart", {"instruction": "Name a colour.", "context": "", "response": "Blue."}, "jumpstart"),
        ("openai", {"messages": EXPECTED}, "openai_chat"),
        (
            "vertex",
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "Name a colour."}]},
                    {"role": "model", "parts": [{"text": "Blue."}]},
                ]
            },
            "vertex",
        ),
        (
            "gradient",
            {
                "inputs": [
                    {"value": "### User:\n", "trainable": False},
                    {"value": "Name a colour.", "trainable": False},
                    {"value": "\n\n### Assistant:\n", "trainable": False},
                    {"value": "Blue.", "trainable": True},
                ]
            },
            "gradient",
        ),
    ],
)
def test_jsonl_formats_read_as_the_same_chat(tmp_path: Path, name: str, record: dict[str, Any], fmt: str) -> None:
    path = write_lines(tmp_path / f"{name}.jsonl", [record] * 2)
    detection = detect(path)
    assert detection.format == fmt
    assert "line 1" in detection.reason  # it says what it looked at
    assert [r["messages"] for r in as_openai(tmp_path, path)] == [EXPECTED, EXPECTED]


def test_alpaca_json_array_streams_with_history_and_system(tmp_path: Path) -> None:
    records = [
        {"instruction": "Add", "input": "2 and 2", "output": "4", "system": "Be exact.", "history": [["Hi", "Hello"]]},
        {"instruction": "Name a colour.", "output": "Blue."},
    ]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(records, indent=2))
    assert detect(path).container == "json"
    first, second = as_openai(tmp_path, path)
    assert first["messages"] == [
        {"role": "system", "content": "Be exact."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Add\n\n2 and 2"},
        {"role": "assistant", "content": "4"},
    ]
    assert second["messages"] == EXPECTED


def test_json_array_reports_the_line_of_a_bad_element(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text('[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c", "output": 5}\n]')
    report = validate(path)
    assert [(f.rule, f.line) for f in report.findings if f.severity == "error"] == [("missing_content", 3)]


def test_json_array_goes_on_after_an_element_that_is_not_json_only(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(
        '[\n {"text": "a"},\n {"text": "bad \\ud800 surrogate"},\n {"text": "c"},\n {"text": "d", "score": NaN},\n'
        ' {"text": "e"}\n]'
    )
    report = validate(path)
    errors = [(f.rule, f.line) for f in report.findings if f.severity == "error"]
    assert errors == [("encoding.lone_surrogate", 3), ("json.invalid", 5)]
    assert sum(scan.examples for scan in report.scans.values()) == 3


def test_sharegpt_function_calls_become_tool_calls(tmp_path: Path) -> None:
    record = {
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {"from": "function_call", "value": json.dumps({"name": "weather", "arguments": {"city": "Paris"}})},
            {"from": "observation", "value": "sunny"},
            {"from": "gpt", "value": "Sunny."},
        ],
        "tools": json.dumps([{"name": "weather", "parameters": {"type": "object"}}]),
    }
    path = write_lines(tmp_path / "sg.jsonl", [record])
    (example,) = as_openai(tmp_path, path)
    call = example["messages"][1]["tool_calls"][0]
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Paris"}'}
    assert example["messages"][2] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
    assert example["tools"][0]["function"]["name"] == "weather"
    assert validate(path).ok


def test_csv_with_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["question", "answer", "notes"])
        writer.writerow(["Name a colour.", "Blue.", "x"])
        writer.writerow(["Multi\nline?", "Yes,\nreally.", "y"])
    rows = as_openai(tmp_path, path, columns="prompt=question,completion=answer")
    assert rows[0]["messages"] == EXPECTED
    assert rows[1]["messages"][0]["content"] == "Multi\nline?"
    # rows are numbered by the line they start on (the header is line 1; row 2 spans lines 3-4)
    bad = tmp_path / "bad.csv"
    bad.write_text('question,answer\n"a\nb",ok\n"c",\n')
    report = validate(bad, columns="prompt=question,completion=answer")
    assert [(f.rule, f.line) for f in report.findings if f.severity == "error"] == [("missing_content", 4)]


def test_mapped_columns_keep_the_unmapped_ones(tmp_path: Path) -> None:
    path = tmp_path / "qa.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(
            [["question", "answer", "system", "notes"], ["Name a colour.", "Blue.", "Be brief.", "x"]]
        )
    rows = as_openai(tmp_path, path, columns="prompt=question,completion=answer")
    assert rows[0]["messages"] == [{"role": "system", "content": "Be brief."}, *EXPECTED]  # as without --columns
    dropped = [f for f in validate(path, columns="prompt=question,completion=answer").findings if f.line == 2]
    assert [(f.rule, f.message.split(":")[0]) for f in dropped] == [("format.field_dropped", "notes")]
    # but not one that would make the row another format: mapping is how pairs are picked out of a wide table
    wide = tmp_path / "uf.csv"
    with open(wide, "w", newline="") as fh:
        header = ["prompt", "prompt_id", "chosen", "rejected", "messages"]
        chat = json.dumps([*EXPECTED])
        csv.writer(fh).writerows([header, ["What is 3+4?", "p1", "Seven.", "Eight.", chat]])
    pairs = as_openai(tmp_path, wide, columns="prompt=prompt,chosen=chosen,rejected=rejected")
    assert "preferred_output" in pairs[0] and "messages" not in pairs[0]


def test_csv_preference_pairs_give_message_lists_as_json_text(tmp_path: Path) -> None:
    user, bot = [EXPECTED[0]], [EXPECTED[1]]
    worse = [{"role": "assistant", "content": "Seven."}]
    pair = {"input": {"messages": user}, "preferred_output": bot, "non_preferred_output": worse}
    trl, dpo = tmp_path / "trl.csv", tmp_path / "dpo.csv"
    with open(trl, "w", newline="") as fh:
        csv.writer(fh).writerows([["prompt", "chosen", "rejected"], [json.dumps(x) for x in (user, bot, worse)]])
    with open(dpo, "w", newline="") as fh:
        header = ["input", "preferred_output", "non_preferred_output"]
        csv.writer(fh).writerows([header, [json.dumps(pair[key]) for key in header]])
    assert as_openai(tmp_path, trl) == [pair]
    assert as_openai(tmp_path, dpo) == [pair]
    # text that only looks like JSON stays text: a TRL answer that is a JSON list, alpaca's input
    with open(trl, "w", newline="") as fh:
        csv.writer(fh).writerows(
            [["prompt", "chosen", "rejected"], ["List two colours as JSON.", '["red", "blue"]', "[]"]]
        )
    (parsed,) = as_openai(tmp_path, trl)
    assert parsed["preferred_output"] == [{"role": "assistant", "content": '["red", "blue"]'}]
    alpaca = tmp_path / "alpaca.csv"
    with open(alpaca, "w", newline="") as fh:
        csv.writer(fh).writerows([["instruction", "input", "output"], ["Name it.", '{"name": "x"}', "x"]])
    assert as_openai(tmp_path, alpaca)[0]["messages"][0]["content"] == 'Name it.\n\n{"name": "x"}'


def test_tsv_with_messages_column_holding_json(tmp_path: Path) -> None:
    path = tmp_path / "chat.tsv"
    path.write_text("messages\tsource\n" + json.dumps(EXPECTED) + "\tweb\n")
    assert detect(path).format == "openai_chat"
    assert as_openai(tmp_path, path)[0]["messages"] == EXPECTED


def test_parquet_nested_messages_and_mapping(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    nested = tmp_path / "chat.parquet"
    weighted = [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue.", "weight": 1}]
    pq.write_table(pa.Table.from_pylist([{"messages": weighted}] * 3), nested)
    # arrow gives every struct every field; the absent weight on the user turn must not come back as null
    assert all(r["messages"] == weighted for r in as_openai(tmp_path, nested))

    flat = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"q": ["Name a colour."] * 2, "a": ["Blue.", None]}), flat)
    report = validate(flat, columns="prompt=q,completion=a")
    assert [(f.rule, f.line) for f in report.findings if f.severity == "error"] == [("missing_content", 2)]


def test_huggingface_datasets_directory(tmp_path: Path) -> None:
    import datasets

    folder = tmp_path / "ds"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([{"prompt": "Name a colour.", "completion": "Blue."}] * 4)}
    ).save_to_disk(str(folder))
    detection = detect(folder)
    assert (detection.container, detection.format) == ("hf_dataset", "prompt_completion")
    assert stats(folder).examples == 4
    assert as_openai(tmp_path, folder)[0]["messages"] == EXPECTED


def test_plain_text_is_for_local_targets_only(tmp_path: Path) -> None:
    path = tmp_path / "corpus.txt"
    path.write_text("First document.\n\nSecond document.\n")
    out = tmp_path / "local.jsonl"
    report = convert(path, to="local", out=out)
    assert read_jsonl(out) == [{"text": "First document."}, {"text": "Second document."}]
    assert report.examples == 2
    assert not validate(path, targets=["openai"]).ok


def test_trl_and_openai_preference_pairs(tmp_path: Path) -> None:
    trl = write_lines(tmp_path / "trl.jsonl", [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."}])
    (pair,) = as_openai(tmp_path, trl)
    assert pair == {
        "input": {"messages": [EXPECTED[0]]},
        "preferred_output": [EXPECTED[1]],
        "non_preferred_output": [{"role": "assistant", "content": "Seven."}],
    }
    same = write_lines(tmp_path / "same.jsonl", [{**pair, "non_preferred_output": pair["preferred_output"]}])
    assert "dpo.identical" in validate(same).counts
    assert validate(trl, targets=["vertex"]).ok  # Vertex preference tuning takes pairs
    assert not validate(trl, targets=["gradient"]).ok  # Gradient takes no preference pairs


def test_bom_is_reported_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (json.dumps({"messages": EXPECTED}) + "\n").encode() * 2)
    report = validate(path)
    assert report.ok and ("encoding.bom", 1) in [(f.rule, f.line) for f in report.findings]
    out = tmp_path / "out.jsonl"
    result = convert(path, to="local", out=out)
    assert not out.read_bytes().startswith(b"\xef\xbb\xbf")
    assert any("byte-order mark" in c for c in result.changes)


def test_unrecognised_columns_say_how_to_map_them(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "qa.jsonl", [{"question": "a", "answer": "b"}])
    (finding,) = validate(path).findings
    assert finding.rule == "format.unknown" and "question" in finding.message and "--columns" in finding.message
    rows = as_openai(tmp_path, path, columns="prompt=question,completion=answer")
    assert rows[0]["messages"][1] == {"role": "assistant", "content": "b"}


def test_unreadable_parquet_and_folders_are_findings(tmp_path: Path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    (tmp_path / "folder").mkdir()
    for path in (broken, tmp_path / "folder"):
        report = validate(path)
        assert [f.rule for f in report.findings if f.severity == "error"] == ["file.unreadable"]


def test_a_valid_50mb_line_streams_and_is_flagged_over_the_token_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    huge = {"messages": [{"role": "user", "content": "word " * (10 << 20)}, {"role": "assistant", "content": "ok"}]}
    write_lines(path, [{"messages": EXPECTED}, huge])
    assert path.stat().st_size > 50 << 20
    report = validate(path, targets=["openai"], model="gpt-4o")
    assert ("too_many_tokens", 2) in [(f.rule, f.line) for f in report.findings]
    assert report.errors == 1 and report.counts["platform.min_examples"] == 1  # 2 examples; only that error


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"n": 123456789012345678901234567890}', {"n": 123456789012345678901234567890}),  # no float rounding
        (b'{"s": "\\ud83d\\ude00"}', {"s": "\U0001f600"}),  # a surrogate pair is one character
        (b'{"n": 1e999999}', "json.invalid"),  # json reads infinity (written back as Infinity, not JSON)
        (b'{"x": NaN}', "json.invalid"),  # json reads NaN and Infinity; they are not JSON
        (b"[1, -Infinity]", "json.invalid"),
        (b'{"s": "bad \\ud800 surrogate"}', "encoding.lone_surrogate"),  # json reads it; no UTF-8 holds it
        (b'{"s": "x\xed\xa0\x80"}', "encoding.invalid_utf8"),  # the same as bytes (json.loads would pass them)
    ],
)
def test_json_lines_parse_as_json_only(raw: bytes, expected: Any) -> None:
    from finetune_hub.data.sources import decode_json_line

    if isinstance(expected, str):
        with pytest.raises(RecordError) as refused:
            decode_json_line(raw)
        assert refused.value.rule == expected
    else:
        assert decode_json_line(raw) == expected


def test_an_escaped_backslash_before_u_d800_is_text() -> None:
    from finetune_hub.data.formats import loads

    assert loads('{"s": "\\\\ud800", "n": 1.5}') == {"s": "\\ud800", "n": 1.5}


def test_vertex_documents_and_audio_stay_valid_for_vertex_but_not_for_openai(tmp_path: Path) -> None:
    answer = {"role": "model", "parts": [{"text": "A summary."}]}
    parts = [{"text": "Summarise"}, {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/report.pdf"}}]
    path = write_lines(tmp_path / "vx.jsonl", [{"contents": [{"role": "user", "parts": parts}, answer]}] * 2)
    assert not [f for f in validate(path, targets=["vertex"]).findings if f.rule.startswith(("vertex.", "openai."))]
    refused = validate(path, targets=["openai"])
    assert "openai.image_url" in {f.rule for f in refused.findings if f.severity == "error"}
