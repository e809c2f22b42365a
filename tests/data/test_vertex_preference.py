"""Vertex preference data: canonical DPO pairs ⇄ Google's `contents` + `completions` lines.

Google's documented line is from "Prepare preference tuning data for Gemini models"
(docs.cloud.google.com/vertex-ai/generative-ai/docs/models/gemini-preference-tuning-prepare): the prompt is
supervised-style `contents` ending with a user turn, `system_instruction` is optional, and `completions` holds
one model turn scored 1 (preferred) and one scored 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_hub.data import convert, rules, validate
from finetune_hub.data.exporters import CHANGES, exporter_for
from finetune_hub.data.findings import RULES
from finetune_hub.data.vertex_preference import check, from_vertex_preference
from tests.data.conftest import write_lines

GOOGLES_LINE = (
    '{"system_instruction": {"parts": [{"text": "You are a chat bot."}]}, "contents": [{"role": "user", "parts": '
    '[{"text": "What is my favorite fruit?"}]}], "completions": [{"score": 1, "completion": {"role": "model", '
    '"parts": [{"text": "Apple! Apple! Apple!"}]}}, {"score": 0, "completion": {"role": "model", "parts": [{"text": '
    '"Your favorite fruit is apple."}]}}]}'
)
OURS: dict[str, Any] = {
    "input": {
        "messages": [
            {"role": "system", "content": "You are a chat bot."},
            {"role": "user", "content": "What is my favorite fruit?"},
        ]
    },
    "preferred_output": [{"role": "assistant", "content": "Apple! Apple! Apple!"}],
    "non_preferred_output": [{"role": "assistant", "content": "Your favorite fruit is apple."}],
}
OUTPUT_KEYS = ("preferred_output", "non_preferred_output")
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]


def read_jsonl(path: Path) -> list[Any]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_exporter_output_is_googles_documented_line(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "pairs.jsonl", [OURS])
    report = convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    assert read_jsonl(tmp_path / "vertex.jsonl") == [json.loads(GOOGLES_LINE)]
    assert set(report.change_counts) == {"vertex.role_renamed", "vertex.preference_system_instruction"}


def test_googles_line_reads_back_as_the_canonical_pair(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "google.jsonl", [GOOGLES_LINE])
    report = convert(source, to="local", out=tmp_path / "pairs.jsonl")
    assert report.detected.startswith("Vertex Gemini preference pairs")
    assert read_jsonl(tmp_path / "pairs.jsonl") == [OURS]
    assert validate(source, targets=["vertex"]).ok  # and it is valid Vertex preference data as it stands


def test_the_report_and_the_validator_name_what_vertex_cannot_carry(tmp_path: Path) -> None:
    pair = {
        "input": {
            "messages": [
                {"role": "user", "content": "Find order 7.", "name": "ann"},
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "shipped"},
                {"role": "user", "content": "So where is it?"},
            ],
            "tools": TOOLS,
        },
        "preferred_output": [{"role": "assistant", "content": "It has shipped."}],
        "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
        "metadata": {"annotator": "x"},
    }
    source = write_lines(tmp_path / "pairs.jsonl", [pair])
    found = validate(source, targets=["vertex"])
    assert found.ok
    (dropped,) = [f for f in found.findings if f.rule == "platform.feature_dropped"]
    assert (dropped.line, dropped.severity) == (1, "warning")
    assert dropped.message == "Vertex preference data drops tool calls, name, input.tools, metadata"

    report = convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    assert set(report.change_counts) == {
        "vertex.role_renamed",
        "vertex.name_dropped",
        "vertex.preference_tools_dropped",
        "vertex.preference_fields_dropped",
    }
    assert any("first at line 1" in line and "tool calls, tool turns" in line for line in report.changes)
    (line,) = read_jsonl(tmp_path / "vertex.jsonl")
    assert line["contents"] == [
        {"role": "user", "parts": [{"text": "Find order 7."}]},
        {"role": "user", "parts": [{"text": "So where is it?"}]},
    ]


def test_vertex_preference_rules_come_with_line_and_fix(tmp_path: Path) -> None:
    good = OURS
    ends_with_model = {
        **OURS,
        "input": {"messages": [*OURS["input"]["messages"], {"role": "assistant", "content": "?"}]},
    }
    two_replies = {**OURS, "preferred_output": OURS["preferred_output"] * 2}
    calls_tool = {
        **OURS,
        "non_preferred_output": [
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            }
        ],
    }
    image = {"type": "image_url", "image_url": {"url": "gs://b/fruit.png"}}
    with_image = {"input": {"messages": [{"role": "user", "content": [{"type": "text", "text": "This?"}, image]}]}}
    with_image |= {k: OURS[k] for k in ("preferred_output", "non_preferred_output")}
    source = write_lines(tmp_path / "pairs.jsonl", [good, ends_with_model, two_replies, calls_tool, with_image])
    report = validate(source, targets=["vertex"])
    errors = [(f.rule, f.line) for f in report.findings if f.severity == "error"]
    assert errors == [
        ("vertex.preference_last_turn", 2),
        ("vertex.preference_output", 3),
        ("vertex.preference_output", 4),
        ("vertex.preference_text_only", 5),
    ]
    assert all(f.fix == RULES[f.rule].fix and f.file == str(source) for f in report.findings)
    assert validate(source, targets=["openai"]).counts.get("vertex.preference_output") is None  # Vertex's only


def test_malformed_completions_are_reported_at_their_line(tmp_path: Path) -> None:
    google = json.loads(GOOGLES_LINE)
    both_preferred = {**google, "completions": [google["completions"][0]] * 2}
    a_function_call = json.loads(GOOGLES_LINE.replace('{"text": "Apple! Apple! Apple!"}', '{"functionCall": {}}'))
    an_image = json.loads(GOOGLES_LINE.replace('{"text": "What is my favorite fruit?"}', '{"fileData": {}}'))
    source = write_lines(tmp_path / "google.jsonl", [google, both_preferred, a_function_call, an_image])
    report = validate(source)
    assert [(f.rule, f.line) for f in report.findings if f.severity == "error"] == [
        ("vertex.preference_completions", 2),
        ("vertex.preference_completions", 3),
        ("vertex.preference_text_only", 4),
    ]


# -- round trips (hypothesis) ----------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s.strip() != ""
)


@st.composite
def pairs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid canonical pairs, some with what Vertex preference data cannot carry."""

    def user() -> dict[str, Any]:
        message = {"role": "user", "content": draw(text)}
        return message | ({"name": draw(st.sampled_from(["ann", "bob"]))} if draw(st.booleans()) else {})

    def reply() -> dict[str, Any]:
        message = {"role": "assistant", "content": draw(text)}
        return message | ({"weight": draw(st.sampled_from([0, 1]))} if draw(st.booleans()) else {})

    prompt: list[dict[str, Any]] = [{"role": "system", "content": draw(text)} for _ in range(draw(st.integers(0, 2)))]
    for n in range(draw(st.integers(0, 2))):  # earlier turns
        prompt.append(user())
        if draw(st.booleans()):  # a tool round
            call = {"id": f"c{n}", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            calling = {"role": "assistant", "tool_calls": [call]} | (
                {"content": draw(text)} if draw(st.booleans()) else {}
            )
            prompt += [calling, {"role": "tool", "tool_call_id": f"c{n}", "content": draw(text)}]
        prompt.append(reply())
    prompt.append(user())
    if draw(st.booleans()) and len(prompt) > 2:  # a system turn after the first turn
        prompt.insert(len(prompt) - 1, {"role": "system", "content": draw(text)})
    record: dict[str, Any] = {"input": {"messages": prompt}, "preferred_output": [reply()]}
    record["non_preferred_output"] = [reply()]
    if draw(st.booleans()):
        record["input"]["tools"] = TOOLS
    if draw(st.booleans()):
        record["metadata"] = {"source": draw(text)}
    return record


def expected_after(record: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """The record as it should come back, given the reported changes."""
    drop = {"tool_calls"} | {key for key in ("name", "weight") if f"vertex.{key}_dropped" in changes}
    leading, prompt = True, []
    for m in record["input"]["messages"]:
        leading = leading and m["role"] == "system"
        if m["role"] == "tool" or (m.get("tool_calls") and not m.get("content")):
            continue  # only with vertex.preference_tools_dropped (asserted by the caller)
        m = {k: v for k, v in m.items() if k not in drop}
        prompt.append(m if leading or m["role"] != "system" else {"role": "user", "content": m["content"]})
    outputs = {key: [{k: v for k, v in m.items() if k not in drop} for m in record[key]] for key in OUTPUT_KEYS}
    return {"input": {"messages": prompt}, **outputs}


@settings(max_examples=300, deadline=None)
@given(pairs())
def test_round_trip_loses_only_what_it_reports(record: dict[str, Any]) -> None:
    assert not [p for p in rules.check_preference(record) if RULES[p[0]].severity == "error"]  # valid input
    exported, changes = exporter_for("vertex")(record)
    assert set(changes) <= set(CHANGES)
    assert exported["contents"][-1]["role"] == "user"
    assert [c["score"] for c in exported["completions"]] == [1, 0]
    back, lost = from_vertex_preference(json.loads(json.dumps(exported)))
    assert back == expected_after(record, changes)
    assert lost == []  # our own export reads back without a loss

    # every loss is reported, and every report names something the record really had
    messages = record["input"]["messages"] + record["preferred_output"] + record["non_preferred_output"]
    tools = record["input"].get("tools") or any(m["role"] == "tool" or "tool_calls" in m for m in messages)
    assert bool(tools) == ("vertex.preference_tools_dropped" in changes)
    assert ("metadata" in record) == ("vertex.preference_fields_dropped" in changes)
    for key in ("name", "weight"):
        assert any(key in m for m in messages) == (f"vertex.{key}_dropped" in changes)
    late_system = "vertex.system_moved" in changes
    # and the validator agrees with the exporter: what it moves is an error, what it drops a warning
    found = {rule for rule, _ in check(record)}
    assert ("vertex.system_not_first" in found) == late_system
    lossy = {"vertex.name_dropped", "vertex.preference_tools_dropped", "vertex.preference_fields_dropped"}
    weighted = any(m.get("weight") == 0 for m in messages)
    assert ("platform.feature_dropped" in found) == bool(lossy & set(changes) or weighted)
    if not (lossy & set(changes)) and "vertex.weight_dropped" not in changes and not late_system:
        assert back == record  # nothing Vertex cannot express: the pair comes back unchanged
