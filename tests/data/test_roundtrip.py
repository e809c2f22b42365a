"""Round trips (hypothesis): canonical → platform → canonical is unchanged wherever the platform can express
the features, and every difference is one the exporter reported."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_hub.data import rules
from finetune_hub.data.exporters import CHANGES, exporter_for
from finetune_hub.data.findings import RULES
from finetune_hub.data.gradient_format import from_gradient
from finetune_hub.data.vertex_format import from_vertex

text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30).filter(
    lambda s: s.strip() != ""
)
arguments = st.dictionaries(st.sampled_from(["city", "days", "unit"]), st.one_of(st.integers(), text), max_size=3)
TOOL_NAMES = ["weather", "add"]


@st.composite
def chats(draw: st.DrawFn) -> dict[str, Any]:
    messages: list[dict[str, Any]] = [{"role": "system", "content": draw(text)} for _ in range(draw(st.integers(0, 2)))]
    n_calls = 0
    for _ in range(draw(st.integers(1, 3))):
        user: dict[str, Any] = {"role": "user", "content": draw(text)}
        if draw(st.booleans()):
            user["name"] = draw(st.sampled_from(["ann", "bob"]))
        messages.append(user)
        if draw(st.booleans()):  # a tool round first
            calls = []
            for _ in range(draw(st.integers(1, 2))):
                n_calls += 1
                name = draw(st.sampled_from(TOOL_NAMES))
                args = json.dumps(draw(arguments))
                calls.append({"id": f"id-{n_calls}", "type": "function", "function": {"name": name, "arguments": args}})
            messages.append({"role": "assistant", "tool_calls": calls})
            messages += [{"role": "tool", "tool_call_id": c["id"], "content": draw(text)} for c in calls]
        reply: dict[str, Any] = {"role": "assistant", "content": draw(text)}
        if draw(st.booleans()):
            reply["weight"] = draw(st.sampled_from([0, 1]))
        messages.append(reply)
    if draw(st.booleans()) and len(messages) > 2:  # a system turn in the middle
        messages.insert(len(messages) - 1, {"role": "system", "content": draw(text)})
    record: dict[str, Any] = {"messages": messages}
    if n_calls or draw(st.booleans()):
        record["tools"] = [
            {
                "type": "function",
                "function": {"name": n, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
            }
            for n in TOOL_NAMES
        ]
    if draw(st.booleans()):
        record["parallel_tool_calls"] = draw(st.booleans())
    return record


def normalized(record: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    """The record with what a reported change removes taken out, tool call ids renumbered in order,
    arguments parsed, and the defaults (weight 1, empty content beside tool calls) made implicit."""
    ids: dict[str, str] = {}
    messages = []
    for m in record["messages"]:
        m = {k: v for k, v in m.items() if k not in drop}
        if m.get("weight") == 1:
            del m["weight"]
        if m.get("tool_calls"):
            m["tool_calls"] = [
                {
                    **c,
                    "id": ids.setdefault(c["id"], f"#{len(ids)}"),
                    "function": {**c["function"], "arguments": json.loads(c["function"]["arguments"])},
                }
                for c in m["tool_calls"]
            ]
            if not m.get("content"):
                m.pop("content", None)
        if m.get("role") == "tool":
            m["tool_call_id"] = ids.get(m["tool_call_id"], m["tool_call_id"])
        messages.append(m)
    out = {k: v for k, v in record.items() if k not in drop and k != "messages"}
    return {"messages": messages, **out}


# change key → the canonical fields it accounts for
DROPS = {
    "vertex.weight_dropped": {"weight"},
    "vertex.name_dropped": {"name"},
    "vertex.parallel_tool_calls_dropped": {"parallel_tool_calls"},
    "gradient.name_dropped": {"name"},
    "gradient.tools_dropped": {"tools"},
}


def expected_after(record: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    drop = set().union(*(DROPS.get(c, set()) for c in changes))
    if "vertex.system_moved" in changes:  # a late system turn becomes a user turn
        leading = True
        messages = []
        for m in record["messages"]:
            leading = leading and m["role"] == "system"
            messages.append(m if leading or m["role"] != "system" else {"role": "user", "content": m["content"]})
        record = {**record, "messages": messages}
    if "gradient.tools_dropped" in changes:
        record = {
            **record,
            "messages": [m for m in record["messages"] if m["role"] != "tool" and not m.get("tool_calls")],
        }
    return normalized(record, drop)


@settings(max_examples=300, deadline=None)
@given(chats())
def test_vertex_round_trip_loses_only_what_it_reports(record: dict[str, Any]) -> None:
    assert not [p for p in rules.check_chat(record) if RULES[p[0]].severity == "error"]  # valid input
    exported, changes = exporter_for("vertex")(record)
    assert set(changes) <= set(CHANGES)
    back, lost = from_vertex(json.loads(json.dumps(exported)))
    assert normalized(back, set()) == expected_after(record, changes)
    calls = any(m.get("tool_calls") for m in record["messages"])
    assert lost == (["source.tool_call_ids_generated"] if calls else [])  # nothing else lost on the way back
    # and the reports are not noise: each one names something the record really had
    if "vertex.weight_dropped" in changes:
        assert any("weight" in m for m in record["messages"])
    if "vertex.tool_call_ids" in changes:
        assert any(m.get("tool_calls") for m in record["messages"])


@settings(max_examples=300, deadline=None)
@given(chats())
def test_gradient_round_trip_loses_only_what_it_reports(record: dict[str, Any]) -> None:
    exported, changes = exporter_for("gradient")(record)
    back, lost = from_gradient(json.loads(json.dumps(exported)))
    assert lost == []
    expected = expected_after(record, changes)
    expected.pop("parallel_tool_calls", None)  # file-level flag with no meaning once tools are gone
    assert normalized(back, set()) == expected
    if any(m.get("tool_calls") for m in record["messages"]):
        assert "gradient.tools_dropped" in changes


@settings(max_examples=100, deadline=None)
@given(chats())
def test_openai_family_targets_are_lossless(record: dict[str, Any]) -> None:
    for target in ("openai", "azure_openai", "sagemaker", "local"):
        exported, changes = exporter_for(target)(record)
        assert exported == record and changes == []
