"""The malformed-input corpus: each input must give its rule id at the right line, exit code 2 from
`fth validate`, and make `convert` write nothing (no output, no temporary files)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from finetune_hub.cli import main
from finetune_hub.data import ConversionError, convert
from tests.data.conftest import chat, write_lines

GOOD = chat(1)


def msgs(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


SYS = {"role": "system", "content": "Be brief."}
USER = {"role": "user", "content": "What is 2 + 2?"}
BOT = {"role": "assistant", "content": "4"}
PAIR = {"input": {"messages": [USER]}, "preferred_output": [BOT], "non_preferred_output": [{**BOT, "content": "5"}]}
VERTEX_Q = {"role": "user", "parts": [{"text": "What is 2 + 2?"}]}
VERTEX_A = {"role": "model", "parts": [{"text": "4"}]}
VERTEX_GOOD = {"contents": [VERTEX_Q, VERTEX_A]}


def vertex(*parts: Any, role: str = "user", **extra: Any) -> dict[str, Any]:
    """A Vertex line whose turn of `role` holds `parts` (the other turn is well formed)."""
    turn = {"role": role, "parts": list(parts)}
    return {"contents": [turn, VERTEX_A] if role == "user" else [VERTEX_Q, turn], **extra}


def call(id_: str = "call_1", name: str = "add", arguments: Any = '{"a": 2, "b": 2}') -> dict[str, Any]:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": arguments}}


def calling(*calls: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "tool_calls": list(calls)}


def answer(id_: str | None = "call_1", content: str = "4") -> dict[str, Any]:
    message = {"role": "tool", "content": content}
    if id_ is not None:
        message["tool_call_id"] = id_
    return message


@dataclass
class Case:
    id: str
    rule: str
    line: int | None
    lines: list[Any] | None = None  # JSONL lines; or `make` builds the file
    make: Callable[[Path], Path] | None = None
    args: list[str] = field(default_factory=list)
    target: str = "openai"  # what convert is asked for
    converts: bool = True  # False where the problem is not in the file itself (suffix, the other file)


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return make


def _huge_truncated_line(tmp: Path) -> Path:
    path = tmp / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.write(json.dumps(GOOD).encode() + b"\n")
        fh.write(b'{"messages": [{"role": "user", "content": "' + b"x" * (50 << 20) + b"\n")  # 50 MB, cut off
    return path


def _overlap(tmp: Path) -> Path:
    write_lines(tmp / "val.jsonl", [chat(100), chat(3)])
    return write_lines(tmp / "train.jsonl", [chat(i) for i in range(12)])


IMAGE = {"type": "image_url", "image_url": {"url": "https://x/a.png"}}
LEGACY_CALL = {"role": "assistant", "content": None, "function_call": {"name": "add", "arguments": "{a: 2}"}}

CASES = [
    # the file and its bytes
    Case("gzip-file", "file.compressed", 1, make=_write("data.jsonl.gz", b"\x1f\x8b\x08\x00" + bytes(40))),
    Case("empty-file", "file.empty", None, make=_write("empty.jsonl", b"")),
    Case("only-blank-lines", "file.empty", None, make=_write("blank.jsonl", b"\n  \n\n")),
    Case("not-found", "file.not_found", None, make=lambda tmp: tmp / "missing.jsonl"),
    Case(
        "invalid-utf8", "encoding.invalid_utf8", 2, [GOOD, b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}']
    ),
    Case(
        "latin1-bytes",
        "encoding.invalid_utf8",
        3,
        [GOOD, GOOD, b'{"messages": [{"role": "user", "content": "caf\xe9"}]}'],
    ),
    Case("utf16-file", "encoding.utf16", 1, make=_write("u16.jsonl", json.dumps(GOOD).encode("utf-16"))),
    # JSON syntax
    Case("truncated-json", "json.invalid", 2, [GOOD, '{"messages": [{"role": "user", "content": "hi"}']),
    Case("trailing-comma", "json.invalid", 2, [GOOD, '{"messages": [{"role": "user", "content": "hi"},]}']),
    Case("python-repr", "json.invalid", 3, [GOOD, GOOD, "{'messages': [{'role': 'user', 'content': 'hi'}]}"]),
    Case("two-objects-one-line", "json.invalid", 2, [GOOD, json.dumps(GOOD) + json.dumps(GOOD)]),
    Case("50mb-line-truncated", "json.invalid", 2, make=_huge_truncated_line),
    Case(
        "json-array-truncated",
        "json.invalid",
        3,
        make=_write("a.json", b'[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "out'),
    ),
    # what Python's json reads but JSON (and UTF-8) cannot hold
    Case("nan", "json.invalid", 2, [GOOD, '{"messages": [{"role": "user", "content": "x", "weight": NaN}]}']),
    Case("minus-infinity", "json.invalid", 3, [GOOD, GOOD, '{"messages": [], "score": -Infinity}']),
    Case("overflowing-number", "json.invalid", 2, [GOOD, '{"messages": [], "score": 1e999}']),
    Case(
        "lone-surrogate-escape",
        "encoding.lone_surrogate",
        2,
        [
            GOOD,
            '{"messages": [{"role": "user", "content": "bad \\ud800"}, {"role": "assistant", "content": "ok"}]}',
        ],
        target="vertex",
    ),
    Case(
        "surrogate-bytes",
        "encoding.invalid_utf8",
        2,
        [
            GOOD,
            b'{"messages": [{"role": "user", "content": "bad \xed\xa0\x80"}, {"role": "assistant", "content": "ok"}]}',
        ],
    ),
    # JSON arrays: one array, one comma between elements, nothing after it
    Case("json-array-text-after-end", "json.invalid", 4, make=_write("a.json", b'[\n {"text": "a"}\n]\n{"text": "b"}')),
    Case("json-array-missing-comma", "json.invalid", 3, make=_write("a.json", b'[\n {"text": "a"}\n {"text": "b"}\n]')),
    Case("json-array-trailing-comma", "json.invalid", 2, make=_write("a.json", b'[\n {"text": "a"},\n]')),
    Case("json-array-unclosed", "json.invalid", 2, make=_write("a.json", b'[\n {"text": "a"},\n')),
    Case("json-array-no-closing-bracket", "json.invalid", 2, make=_write("a.json", b'[\n {"text": "a"}\n\n')),
    Case("json-array-nan", "json.invalid", 2, make=_write("a.json", b'[{"text": "a"},\n {"text": "b", "n": NaN}]')),
    Case(
        "json-array-lone-surrogate",
        "encoding.lone_surrogate",
        2,
        make=_write("a.json", b'[{"text": "a"},\n {"text": "\\udfff"}]'),
        target="local",
    ),
    # wrong types and shapes (the cookbook's seven kinds, and ours)
    Case("array-line", "data_type", 2, [GOOD, "[1, 2, 3]"]),
    Case("string-line", "data_type", 2, [GOOD, '"just text"']),
    Case("no-messages-key", "missing_messages_list", 2, [GOOD, {"msgs": [USER, BOT]}]),
    Case("messages-empty", "missing_messages_list", 2, [GOOD, {"messages": []}]),
    Case("messages-string", "missing_messages_list", 2, [GOOD, {"messages": "hello"}]),
    Case("message-string", "message_type", 2, [GOOD, msgs(USER, "assistant: 4")]),
    Case("missing-role", "message_missing_key", 2, [GOOD, msgs({"content": "hi"}, BOT)]),
    Case("missing-content", "message_missing_key", 2, [GOOD, msgs({"role": "user"}, BOT)]),
    Case("unknown-key", "message_unrecognized_key", 2, [GOOD, msgs({**USER, "tokens": 5}, BOT)]),
    Case("unknown-role", "unrecognized_role", 2, [GOOD, msgs({"role": "bot", "content": "x"}, USER, BOT)]),
    Case("role-typo", "unrecognized_role", 2, [GOOD, msgs(USER, {"role": "assistent", "content": "4"})]),
    Case("content-number", "missing_content", 2, [GOOD, msgs({"role": "user", "content": 42}, BOT)]),
    Case("content-empty", "missing_content", 2, [GOOD, msgs(USER, {"role": "assistant", "content": ""})]),
    Case("content-null", "missing_content", 2, [GOOD, msgs({"role": "user", "content": None}, BOT)]),
    Case("content-object", "missing_content", 2, [GOOD, msgs({"role": "user", "content": {"text": "hi"}}, BOT)]),
    Case("bad-content-part", "missing_content", 2, [GOOD, msgs({"role": "user", "content": [{"type": "audio"}]}, BOT)]),
    Case("no-assistant", "example_missing_assistant_message", 2, [GOOD, msgs(SYS, USER)]),
    # weights
    Case("weight-2", "weight_value", 2, [GOOD, msgs(USER, {**BOT, "weight": 2})]),
    Case("weight-string", "weight_value", 2, [GOOD, msgs(USER, {**BOT, "weight": "1"})]),
    Case("weight-half", "weight_value", 2, [GOOD, msgs(USER, {**BOT, "weight": 0.5})]),
    Case("weight-bool", "weight_value", 2, [GOOD, msgs(USER, {**BOT, "weight": True})]),
    Case("weight-on-user", "weight_role", 2, [GOOD, msgs({**USER, "weight": 1}, BOT)]),
    Case("name-number", "name_type", 2, [GOOD, msgs({**USER, "name": 7}, BOT)]),
    # tool calls
    Case(
        "tool-calls-not-list",
        "tool_call_malformed",
        2,
        [GOOD, msgs(USER, {"role": "assistant", "tool_calls": {"id": "x"}})],
    ),
    Case(
        "tool-call-no-id",
        "tool_call_malformed",
        2,
        [GOOD, msgs(USER, calling({"type": "function", "function": {"name": "f", "arguments": "{}"}}))],
    ),
    Case(
        "tool-args-object",
        "tool_call_malformed",
        2,
        [GOOD, msgs(USER, calling(call(arguments={"a": 1})), answer(), BOT)],
    ),
    Case(
        "tool-args-bad-json",
        "tool_call_arguments_json",
        2,
        [GOOD, msgs(USER, calling(call(arguments="{a: 1")), answer(), BOT)],
    ),
    Case("tool-duplicate-id", "tool_call_duplicate_id", 2, [GOOD, msgs(USER, calling(call(), call()), answer(), BOT)]),
    Case(
        "dangling-tool-call",
        "tool_call_unanswered",
        2,
        [GOOD, msgs(USER, calling(call()), {"role": "user", "content": "and?"}, BOT)],
    ),
    Case("orphan-tool-answer", "tool_response_orphan", 2, [GOOD, msgs(USER, calling(call()), answer("call_9"), BOT)]),
    Case("tool-answer-no-id", "tool_response_orphan", 2, [GOOD, msgs(USER, calling(call()), answer(None), BOT)]),
    Case("tools-not-list", "tools_type", 2, [GOOD, msgs(USER, BOT, tools={"name": "add"})]),
    Case("parallel-not-bool", "parallel_tool_calls_type", 2, [GOOD, msgs(USER, BOT, parallel_tool_calls="yes")]),
    # mixed and unknown formats
    Case("mixed-prompt-completion", "format.mixed", 3, [GOOD, GOOD, {"prompt": "a", "completion": "b"}]),
    Case("mixed-in-alpaca", "format.mixed", 2, [{"instruction": "a", "output": "b"}, GOOD]),
    Case("unknown-format", "format.unknown", None, [{"question": "a", "answer": "b"}]),
    Case(
        "alpaca-output-number",
        "missing_content",
        2,
        [{"instruction": "a", "output": "b"}, {"instruction": "c", "output": 3}],
    ),
    Case(
        "sharegpt-unknown-from",
        "unrecognized_role",
        2,
        [
            {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]},
            {"conversations": [{"from": "robot", "value": "a"}]},
        ],
    ),
    Case(
        "vertex-assistant-role",
        "unrecognized_role",
        1,
        [{"contents": [{"role": "user", "parts": [{"text": "a"}]}, {"role": "assistant", "parts": [{"text": "b"}]}]}],
    ),
    # Vertex lines of the wrong shape: a finding at their line, never a crash
    Case("vertex-part-number", "vertex.part_malformed", 1, ['{"contents":[{"role":"user","parts":[1]}]}']),
    Case("vertex-text-number", "vertex.part_malformed", 2, [VERTEX_GOOD, vertex({"text": 5})]),
    Case("vertex-model-text-null", "vertex.part_malformed", 2, [VERTEX_GOOD, vertex({"text": None}, role="model")]),
    Case(
        "vertex-call-string", "vertex.part_malformed", 2, [VERTEX_GOOD, vertex({"functionCall": "add"}, role="model")]
    ),
    Case(
        "vertex-call-no-name",
        "vertex.part_malformed",
        2,
        [VERTEX_GOOD, vertex({"functionCall": {"args": {"a": 1}}}, role="model")],
    ),
    Case("vertex-response-list", "vertex.part_malformed", 2, [VERTEX_GOOD, vertex({"functionResponse": [1]})]),
    Case(
        "vertex-response-beside-text",
        "vertex.part_malformed",
        2,
        [VERTEX_GOOD, vertex({"functionResponse": {"name": "add", "response": {}}}, {"text": "and?"})],
    ),
    Case("vertex-file-data-string", "vertex.part_malformed", 2, [VERTEX_GOOD, vertex({"fileData": "gs://b/a.png"})]),
    Case(
        "vertex-inline-data",
        "vertex.part_malformed",
        2,
        [VERTEX_GOOD, vertex({"text": "This?"}, {"inlineData": {"mimeType": "image/png", "data": "AA=="}})],
    ),
    Case(
        "vertex-model-file-data",
        "vertex.part_malformed",
        2,
        [VERTEX_GOOD, vertex({"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png"}}, role="model")],
    ),
    Case(
        "vertex-image-for-openai",
        "openai.image_url",
        2,
        [VERTEX_GOOD, vertex({"text": "This?"}, {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/a.png"}})],
        args=["--for", "openai"],
    ),
    Case("vertex-system-string", "vertex.part_malformed", 2, [VERTEX_GOOD, {**VERTEX_GOOD, "systemInstruction": "Hi"}]),
    Case(
        "vertex-system-part-number",
        "vertex.part_malformed",
        2,
        [VERTEX_GOOD, {**VERTEX_GOOD, "systemInstruction": {"parts": [3]}}],
    ),
    Case("vertex-tools-object", "tools_type", 2, [VERTEX_GOOD, {**VERTEX_GOOD, "tools": {"functionDeclarations": []}}]),
    Case(
        "vertex-declaration-string",
        "tools_type",
        2,
        [VERTEX_GOOD, {**VERTEX_GOOD, "tools": [{"functionDeclarations": ["add"]}]}],
    ),
    Case(
        "csv-missing-column",
        "format.column_missing",
        1,
        make=_write("t.csv", b"question,answer\na,b\n"),
        args=["--columns", "prompt=question,completion=reply"],
    ),
    # preference pairs
    Case("dpo-missing-rejected", "dpo.malformed", 1, [{"input": {"messages": [USER]}, "preferred_output": [BOT]}]),
    Case(
        "dpo-user-in-output",
        "dpo.malformed",
        1,
        [{"input": {"messages": [USER]}, "preferred_output": [USER], "non_preferred_output": [BOT]}],
    ),
    # Vertex preference data
    Case(
        "vertex-pref-ends-with-model",
        "vertex.preference_last_turn",
        2,
        [PAIR, {**PAIR, "input": {"messages": [USER, BOT]}}],
        args=["--for", "vertex"],
        target="vertex",
    ),
    Case(
        "vertex-pref-two-replies",
        "vertex.preference_output",
        2,
        [PAIR, {**PAIR, "preferred_output": [BOT, BOT]}],
        args=["--for", "vertex"],
        target="vertex",
    ),
    Case(
        "vertex-pref-image",
        "vertex.preference_text_only",
        1,
        [
            {
                **PAIR,
                "input": {
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "gs://b/a.png"}}]}
                    ]
                },
            }
        ],
        args=["--for", "vertex"],
        target="vertex",
    ),
    Case(
        "vertex-pref-scores",
        "vertex.preference_completions",
        1,
        [
            {
                "contents": [{"role": "user", "parts": [{"text": "a"}]}],
                "completions": [{"score": 1, "completion": {"role": "model", "parts": [{"text": "b"}]}}],
            }
        ],
        target="vertex",
    ),
    # platform packs
    Case(
        "vertex-system-late",
        "vertex.system_not_first",
        2,
        [GOOD, msgs(USER, BOT, SYS, USER, BOT)],
        args=["--for", "vertex"],
        target="vertex",
    ),
    Case(
        "vertex-http-image",
        "vertex.image_not_gcs",
        2,
        [
            GOOD,
            msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/a.png"}}]}, BOT),
        ],
        args=["--for", "vertex"],
        target="vertex",
    ),
    Case(
        "azure-file-path-image",
        "openai.image_url",
        2,
        [GOOD, msgs({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "/tmp/a.png"}}]}, BOT)],
        args=["--for", "azure_openai"],
        target="azure_openai",
    ),
    # shapes that once crashed the checks, or passed them and then crashed a conversion
    Case(
        "image-url-a-string",
        "missing_content",
        2,
        [GOOD, msgs({"role": "user", "content": [{"type": "image_url", "image_url": "https://x/a.png"}]}, BOT)],
    ),
    Case(
        "image-in-an-assistant-turn",
        "openai.image_role",
        2,
        [GOOD, msgs(USER, {"role": "assistant", "content": [IMAGE]})],
        args=["--for", "openai"],
    ),
    Case(
        "legacy-call-arguments-not-json",
        "tool_call_arguments_json",
        2,
        [GOOD, msgs(USER, LEGACY_CALL, {"role": "function", "name": "add", "content": "4"}, BOT)],
        target="vertex",
    ),
    Case(
        "legacy-call-arguments-an-object",
        "tool_call_malformed",
        2,
        [GOOD, msgs(USER, {**LEGACY_CALL, "function_call": {"name": "add", "arguments": {"a": 2}}}, BOT)],
        target="vertex",
    ),
    Case("messages-a-number", "missing_messages_list", 2, [GOOD, {"messages": 1}], target="vertex"),
    Case("role-a-list", "unrecognized_role", 2, [GOOD, msgs({"role": ["user"], "content": "hi"}, BOT)]),
    Case("legacy-functions-a-number", "tools_type", 2, [GOOD, msgs(USER, BOT, functions=1)], target="vertex"),
    Case(
        "sharegpt-tools-a-number",
        "tools_type",
        1,
        [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}], "tools": 1}],
    ),
    Case(
        "openai-text-only",
        "platform.unsupported_format",
        1,
        make=_write("t.txt", b"just some text\n"),
        args=["--for", "openai"],
    ),
    Case("openai-too-few", "platform.min_examples", None, [chat(i) for i in range(3)], args=["--for", "openai"]),
    Case(
        "azure-suffix-dot",
        "azure.suffix",
        None,
        [chat(i) for i in range(12)],
        args=["--for", "azure_openai", "--suffix", "v1.2"],
        converts=False,
    ),
    Case(
        "train-validation-overlap",
        "train_validation_overlap",
        2,
        make=_overlap,
        args=["--validation", "{tmp}/val.jsonl"],
        converts=False,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = case.make(tmp_path) if case.make else write_lines(tmp_path / "data.jsonl", case.lines or [])
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]

    code = main(["validate", str(path), "--json", *args])
    report = json.loads(capsys.readouterr().out)

    assert code == 2, report
    hits = [f for f in report["findings"] if f["rule"] == case.rule and f["severity"] == "error"]
    assert hits, f"expected {case.rule}, got {[(f['rule'], f['line']) for f in report['findings']]}"
    assert case.line in [f["line"] for f in hits]
    assert all(f["fix"] and f["message"] for f in hits)

    # nothing is written when the data is bad: no output file, no temporary parts left behind
    if not case.converts:
        return
    out_dir = tmp_path / "out"
    with pytest.raises(ConversionError):
        options = {"columns": args[1]} if args[:1] == ["--columns"] else {}
        convert(path, to=case.target, out=out_dir / "converted.jsonl", **options)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.rule for c in CASES}) >= 30
