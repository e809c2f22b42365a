"""Inputs a bug hunt found mishandled without a crash: silently wrong output, counts or findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_hub.cli import main
from finetune_hub.data import convert
from finetune_hub.data.billing import example_token_cap
from finetune_hub.data.tokens import ApproximateCounter
from tests.data.conftest import chat, write_lines

BOM = b"\xef\xbb\xbf"


def test_answers_to_parallel_calls_of_one_function_keep_their_calls_through_vertex(tmp_path: Path) -> None:
    def call(id_: str, city: str) -> dict[str, object]:
        arguments = json.dumps({"city": city})
        return {"id": id_, "type": "function", "function": {"name": "weather", "arguments": arguments}}

    record = {
        "messages": [
            {"role": "user", "content": "Paris and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": [call("c1", "Paris"), call("c2", "Rome")]},
            {"role": "tool", "tool_call_id": "c2", "content": "Rome: sun"},  # answered in the other order
            {"role": "tool", "tool_call_id": "c1", "content": "Paris: rain"},
            {"role": "assistant", "content": "Rain in Paris, sun in Rome."},
        ]
    }
    source = write_lines(tmp_path / "calls.jsonl", [record] * 10)  # OpenAI takes 10 or more
    convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    convert(tmp_path / "vertex.jsonl", to="openai", out=tmp_path / "back.jsonl")
    back = json.loads((tmp_path / "back.jsonl").read_text().splitlines()[0])["messages"]
    asked = {c["id"]: json.loads(c["function"]["arguments"])["city"] for c in back[1]["tool_calls"]}
    answered = {m["tool_call_id"]: m["content"] for m in back[2:4]}
    assert {asked[i]: answered[i] for i in asked} == {"Paris": "Paris: rain", "Rome": "Rome: sun"}


@pytest.mark.parametrize(
    "line",
    [
        {"prompt": "a", "completion": "b"},  # another format
        [1, 2],  # not an object
    ],
)
def test_stats_refuses_records_it_would_leave_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: object
) -> None:
    path = write_lines(tmp_path / "mixed.jsonl", [chat(i) for i in range(12)] + [line])
    assert main(["stats", str(path)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "1 record(s)" in err and f"{path}:13: error" in err


def test_tool_calls_count_whether_or_not_content_is_there() -> None:
    counter = ApproximateCounter("test")
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}' * 20}}
    with_null = [{"role": "assistant", "content": None, "tool_calls": [call]}]
    without = [{"role": "assistant", "tool_calls": [call]}]
    legacy = [{"role": "assistant", "function_call": call["function"]}]
    counts = {counter.messages(m)[0] for m in (with_null, without, legacy)}
    assert len(counts) == 1 and counts.pop() > 80


def test_a_byte_order_mark_inside_the_file_is_a_warning_and_convert_removes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [json.dumps(chat(i)).encode() for i in range(12)]
    path = tmp_path / "joined.jsonl"
    path.write_bytes(b"\n".join([*lines[:6], BOM + lines[6], *lines[7:]]) + b"\n")  # `cat a.jsonl b.jsonl`
    assert main(["validate", str(path), "--json"]) == 0
    found = [(f["rule"], f["line"]) for f in json.loads(capsys.readouterr().out)["findings"]]
    assert ("encoding.bom_inside", 7) in found
    report = convert(path, to="openai", out=tmp_path / "out.jsonl")
    assert report.change_counts["source.inner_boms_removed"] == 1
    assert [json.loads(raw.decode("utf-8")) for raw in (tmp_path / "out.jsonl").read_bytes().splitlines()] == [
        chat(i) for i in range(12)
    ]


def test_a_hugging_face_chat_system_field_becomes_the_system_message(tmp_path: Path) -> None:
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Arr"}]
    path = write_lines(
        tmp_path / "hf.jsonl", [{"conversations": turns, "system": "Be a pirate.", "id": i} for i in range(10)]
    )
    report = convert(path, to="openai", out=tmp_path / "out.jsonl")
    first = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert first == {"messages": [{"role": "system", "content": "Be a pirate."}, *turns]}
    assert report.change_counts["source.field_dropped:id"] == 10  # said, not silently carried or lost
    # a conversation that has its own system message keeps it, and the field is reported as not used
    own = [{"role": "system", "content": "Be a parrot."}, *turns]
    path = write_lines(tmp_path / "own.jsonl", [{"conversations": own, "system": "Be a pirate."}] * 10)
    report = convert(path, to="openai", out=tmp_path / "own-out.jsonl")
    assert json.loads((tmp_path / "own-out.jsonl").read_text().splitlines()[0]) == {"messages": own}
    assert report.change_counts["source.field_dropped:system"] == 10


def test_each_file_keeps_its_own_first_findings_of_a_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = chat(0)
    bad["messages"][2]["weight"] = 2
    train = write_lines(tmp_path / "train.jsonl", [bad] * 25)
    validation = write_lines(tmp_path / "val.jsonl", [chat(1), chat(2), bad])
    assert main(["validate", str(train), "--validation", str(validation), "--json"]) == 2
    findings = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "weight_value"]
    assert (str(validation), 3) in [(f["file"], f["line"]) for f in findings]
    more = [f for f in findings if f["line"] is None]
    assert [(f["file"], f["message"]) for f in more] == [(str(train), "5 more like this")]


def test_vertex_caps_an_example_whatever_the_model() -> None:
    assert example_token_cap("vertex", None)[0] == 131_072
    assert example_token_cap("vertex", "my-tuned-model")[0] == 131_072


def test_csv_rows_after_a_blank_line_or_a_quoted_newline_have_their_own_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.csv"
    path.write_text('prompt,completion\n"a","b"\n"multi\nline","c"\n\n"d",\n')
    assert main(["validate", str(path), "--json"]) == 2
    found = json.loads(capsys.readouterr().out)["findings"]
    assert ("missing_content", 6) in [(f["rule"], f["line"]) for f in found]  # "d" with no completion
    assert {f["line"] for f in found if f["rule"] == "example_missing_system_message"} == {2, 3, 6}


def test_a_legacy_function_call_is_checked_as_a_tool_call_is() -> None:
    from finetune_hub.data import rules

    record = {
        "functions": [{"name": "add", "parameters": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "2 - 1?"},
            {"role": "assistant", "content": None, "function_call": {"name": "sub", "arguments": '{"a": 2}'}},
            {"role": "function", "name": "sub", "content": "1"},
            {"role": "assistant", "content": "1"},
        ],
    }
    assert ("tool_undeclared", "messages[1].function_call calls 'sub', which 'tools' does not declare") in rules.check(
        record, "chat"
    )
