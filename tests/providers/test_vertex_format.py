"""What the Vertex exporter writes, next to the JSON lines Google documents for Gemini supervised tuning.

Each case is an OpenAI chat line (finetune-hub's canonical record) and the line Google's documentation shows
for the same conversation. The exporter's output must equal Google's line (as JSON, key order aside).

Sources (pages under cloud.google.com/vertex-ai/generative-ai/docs/models/, read 2026-11-27):
- tune_gemini/text_tune: the "Captain Barktholomew" example (system instruction, multi-turn chat);
- tune-function-calling: the "get_product_sku" example (function call and declarations)
  (that page spells the key `system_instruction`; the dataset reference spells it `systemInstruction`, and the
  service's proto-JSON parser takes both, so the camelCase spelling is expected here)
- a tool answer is a `functionResponse` part {name, response: <JSON object>} in a user turn (FunctionResponse in
  the Vertex API reference); a plain-text answer is wrapped as {"content": text}.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune_hub import data

PIXEL_TOOLS_OPENAI = [
    {
        "type": "function",
        "function": {
            "name": "get_product_sku",
            "description": "Get the available inventory for a Google products, e.g: Pixel phones, Pixel Watches, "
            "Google Home etc",
            "parameters": {
                "type": "object",
                "properties": {
                    "product_name": {
                        "type": "string",
                        "description": "Product name",
                        "enum": ["Pixel 8 Pro 128GB", "Pixel 8 Pro 256GB", "Pixel 8 Pro 512GB", "Pixel 8 Pro 1TB"],
                    }
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_store_location",
            "description": "Get the location of the closest store",
            "parameters": {"type": "object", "properties": {"location": {"type": "string", "description": "Location"}}},
        },
    },
]

CASES = {
    "system prompt and multi-turn chat": (
        # ours
        '{"messages": [{"role": "system", "content": "You are a pirate dog named Captain Barktholomew."}, '
        '{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Argh! What brings ye to my ship?"}, '
        '{"role": "user", "content": "What\'s your name?"}, {"role": "assistant", "content": "I be Captain '
        'Barktholomew, the most feared pirate dog of the seven seas."}]}',
        # Google's
        '{"systemInstruction":{"role":"system","parts":[{"text":"You are a pirate dog named Captain Barktholomew."}]},'
        '"contents":[{"role":"user","parts":[{"text":"Hi"}]},{"role":"model","parts":[{"text":"Argh! What brings ye '
        'to my ship?"}]},{"role":"user","parts":[{"text":"What\'s your name?"}]},{"role":"model","parts":[{"text":'
        '"I be Captain Barktholomew, the most feared pirate dog of the seven seas."}]}]}',
    ),
    "tool call with declarations": (
        json.dumps(
            {
                "messages": [
                    {
                        "role": "system",
                        "content": "You are an assistant that helps users find the best product for them.",
                    },
                    {"role": "user", "content": "Do you have the White Pixel 8 Pro 128GB in stock in the US?"},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {
                                    "name": "get_product_sku",
                                    "arguments": '{"product_name": "Pixel 8 Pro 128GB"}',
                                },
                            }
                        ],
                    },
                ],
                "tools": PIXEL_TOOLS_OPENAI,
            }
        ),
        '{"systemInstruction":{"role":"system","parts":[{"text":"You are an assistant that helps users find the best '
        'product for them."}]},"contents":[{"role":"user","parts":[{"text":"Do you have the White Pixel 8 Pro 128GB '
        'in stock in the US?"}]},{"role":"model","parts":[{"functionCall":{"name":"get_product_sku","args":'
        '{"product_name":"Pixel 8 Pro 128GB"}}}]}],"tools":[{"functionDeclarations":[{"name":"get_product_sku",'
        '"description":"Get the available inventory for a Google products, e.g: Pixel phones, Pixel Watches, Google '
        'Home etc","parameters":{"type":"OBJECT","properties":{"product_name":{"type":"STRING","description":'
        '"Product name","enum":["Pixel 8 Pro 128GB","Pixel 8 Pro 256GB","Pixel 8 Pro 512GB","Pixel 8 Pro 1TB"]}}}},'
        '{"name":"get_store_location","description":"Get the location of the closest store","parameters":{"type":'
        '"OBJECT","properties":{"location":{"type":"STRING","description":"Location"}}}}]}]}',
    ),
    "tool answer and the reply after it": (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "Where is the closest store? I'm in Mountain View."},
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {
                                    "name": "get_store_location",
                                    "arguments": '{"location": "Mountain View, CA"}',
                                },
                            }
                        ],
                    },
                    {
                        "role": "tool",
                        "tool_call_id": "call_9",
                        "content": "2000 N Shoreline Blvd, Mountain View, CA 94043",
                    },
                    {"role": "assistant", "content": "The closest store is at 2000 N Shoreline Blvd, Mountain View."},
                ],
                "tools": PIXEL_TOOLS_OPENAI[1:],
            }
        ),
        '{"contents":[{"role":"user","parts":[{"text":"Where is the closest store? I\'m in Mountain View."}]},'
        '{"role":"model","parts":[{"functionCall":{"name":"get_store_location","args":{"location":"Mountain View, '
        'CA"}}}]},{"role":"user","parts":[{"functionResponse":{"name":"get_store_location","response":{"content":'
        '"2000 N Shoreline Blvd, Mountain View, CA 94043"}}}]},{"role":"model","parts":[{"text":"The closest store '
        'is at 2000 N Shoreline Blvd, Mountain View."}]}],"tools":[{"functionDeclarations":[{"name":'
        '"get_store_location","description":"Get the location of the closest store","parameters":{"type":"OBJECT",'
        '"properties":{"location":{"type":"STRING","description":"Location"}}}}]}]}',
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_exporter_output_is_googles_documented_line(case: str, tmp_path: Path) -> None:
    ours, googles = CASES[case]
    source = tmp_path / "chat.jsonl"
    source.write_text(ours + "\n", encoding="utf-8")
    data.convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    (written,) = (tmp_path / "vertex.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(written) == json.loads(googles)


def test_the_report_names_what_the_conversion_changed(tmp_path: Path) -> None:
    source = tmp_path / "chat.jsonl"
    source.write_text("".join(ours + "\n" for ours, _ in CASES.values()), encoding="utf-8")
    report = data.convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    text = "\n".join(report.changes)
    for change in ("'assistant' renamed to 'model'", "systemInstruction", "tool call ids dropped", "upper-cased"):
        assert change in text


def test_text_parts_of_every_role_become_vertex_text_parts(tmp_path: Path) -> None:
    def parts(*texts: str) -> list[dict[str, str]]:
        return [{"type": "text", "text": t} for t in texts]

    image = {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}}
    record = {
        "messages": [
            {"role": "system", "content": parts("Be brief.", "Be kind.")},
            {"role": "user", "content": [*parts("What is this?"), image]},
            {"role": "assistant", "content": [*parts("A cat", " on a mat."), image]},
        ]
    }
    source = tmp_path / "chat.jsonl"
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")
    report = data.convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    (written,) = (tmp_path / "vertex.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(written) == {
        "systemInstruction": {"role": "system", "parts": [{"text": "Be brief."}, {"text": "Be kind."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "What is this?"},
                    {"fileData": {"mimeType": "image/png", "fileUri": image["image_url"]["url"]}},
                ],
            },
            {"role": "model", "parts": [{"text": "A cat"}, {"text": " on a mat."}]},
        ],
    }
    # the image of the model turn cannot be carried: the report and the validator both say so
    assert report.change_counts["vertex.non_user_image_dropped"] == 1
    assert any("first at line 1" in c and "assistant" in c for c in report.changes)
    (dropped,) = [f for f in data.validate(source, targets=["vertex"]).findings if f.rule == "platform.feature_dropped"]
    assert dropped.message == "Vertex drops images of assistant turns"


def test_fields_vertex_has_no_place_for_are_reported(tmp_path: Path) -> None:
    record = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
        "metadata": {"source": "support"},
        "id": 7,
    }
    source = tmp_path / "chat.jsonl"
    source.write_text(json.dumps(record) + "\n", encoding="utf-8")
    found = data.validate(source, targets=["vertex"])
    assert found.ok
    (dropped,) = [f for f in found.findings if f.rule == "platform.feature_dropped"]
    assert (dropped.line, dropped.severity, dropped.message) == (1, "warning", "Vertex drops id, metadata")

    report = data.convert(source, to="vertex", out=tmp_path / "vertex.jsonl")
    assert report.change_counts["vertex.fields_dropped"] == 1
    assert any(c.startswith("fields besides") and "first at line 1" in c for c in report.changes)
    (written,) = (tmp_path / "vertex.jsonl").read_text(encoding="utf-8").splitlines()
    assert set(json.loads(written)) == {"contents"}
