"""Chat rendering, assistant-only labels, truncation and batching (no model forward passes)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from local_backend.data import (
    FALLBACK_TEMPLATE,
    IGNORE,
    DataError,
    Example,
    collate,
    end_of_turn_warning,
    load_examples,
    plan_batches,
    render_sample,
)
from tests.local.conftest import conversation, write_jsonl

EOT = {"llama": "<|eot_id|>", "qwen2": "<|im_end|>"}


def tokenizer_of(model: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model)


def supervised_runs(tokenizer, example: Example) -> list[str]:  # type: ignore[no-untyped-def]
    runs = []
    for supervised, group in itertools.groupby(
        zip(example.input_ids, example.labels, strict=True), lambda p: p[1] != IGNORE
    ):
        if supervised:
            runs.append(tokenizer.decode([tok for tok, _ in group]))
    return runs


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_labels_cover_exactly_the_trained_assistant_turns(arch: str, request: pytest.FixtureRequest, chat_data) -> None:
    model = request.getfixturevalue("llama_model" if arch == "llama" else "qwen_model")
    tokenizer = tokenizer_of(model)
    train, _ = chat_data
    examples, report = load_examples(train, tokenizer, max_seq_length=4096)
    rows = [json.loads(line) for line in train.read_text().splitlines()]
    assert report.examples == len(rows) == len(examples) and report.template == "tokenizer"
    for example, row in zip(examples, rows, strict=True):
        expected = [
            m["content"] + EOT[arch] for m in row["messages"] if m["role"] == "assistant" and m.get("weight", 1)
        ]
        assert supervised_runs(tokenizer, example) == expected
        assert all(label in (IGNORE, tok) for tok, label in zip(example.input_ids, example.labels, strict=True))
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        assert tokenizer.decode(list(example.input_ids)) == text  # nothing lost or added
    assert report.supervised == sum(e.supervised for e in examples)


def test_weight_zero_turns_are_not_trained(llama_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    row = {"messages": [{"role": "user", "content": "reverse: alpha beta"},
                        {"role": "assistant", "content": "beta alpha", "weight": 0},
                        {"role": "user", "content": "reverse: gamma"},
                        {"role": "assistant", "content": "gamma"}]}  # fmt: skip
    examples, _ = load_examples(write_jsonl(tmp_path / "d.jsonl", [row]), tokenizer, max_seq_length=512)
    assert supervised_runs(tokenizer, examples[0]) == ["gamma<|eot_id|>"]


def test_fallback_template_trains_eos(llama_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    tokenizer.chat_template = None
    examples, report = load_examples(
        write_jsonl(tmp_path / "d.jsonl", [conversation(1)]), tokenizer, max_seq_length=512
    )
    assert report.template == "fallback"
    runs = supervised_runs(tokenizer, examples[0])
    assert runs and all(r.endswith(tokenizer.eos_token) for r in runs)
    assert end_of_turn_warning(tokenizer, FALLBACK_TEMPLATE) is None
    assert "⟦" in render_sample(tokenizer, examples[0])


def test_tool_calls_are_trained_under_the_fallback_and_never_dropped(llama_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
    row = {"messages": [{"role": "user", "content": "weather in Oslo?"},
                        {"role": "assistant", "content": None, "tool_calls": [call]},
                        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
                        {"role": "assistant", "content": "Sunny."}]}  # fmt: skip
    path = write_jsonl(tmp_path / "d.jsonl", [row])
    tokenizer.chat_template = None
    (example,), _ = load_examples(path, tokenizer, max_seq_length=512)
    first, second = supervised_runs(tokenizer, example)
    assert "get_weather" in first and "Oslo" in first and first.endswith(tokenizer.eos_token) and "None" not in first
    assert second == "Sunny." + tokenizer.eos_token
    # a template that renders only the content would teach the model to answer instead of calling the tool
    content_only = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(DataError, match=r"d.jsonl:1: the chat template drops assistant turn 1's tool_calls"):
        load_examples(path, tokenizer, max_seq_length=512, chat_template=content_only)


def test_template_errors_and_undecodable_lines_name_file_and_line(llama_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    strict = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}{{ m['content'] }}<|eot_id|>{% endfor %}"
    )
    rows = [conversation(0), {"messages": [{"role": "system", "content": "s"}, *conversation(0)["messages"][-2:]]}]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with pytest.raises(DataError, match=r"d.jsonl:2: the chat template cannot render .*System role not supported"):
        load_examples(path, tokenizer, max_seq_length=512, chat_template=strict)
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(json.dumps(conversation(0)).encode() + b"\n" + '{"messages": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.jsonl:2: not UTF-8"):
        load_examples(latin, tokenizer, max_seq_length=512)
    with pytest.raises(DataError, match="no template file"):
        load_examples(path, tokenizer, max_seq_length=512, chat_template=str(tmp_path / "chatml.jinja"))


def test_text_a_template_adds_after_the_whole_conversation_is_not_trained(qwen_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(qwen_model)
    # Phi-3 style: an end-of-text after the conversation unless a generation prompt follows
    trailing = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% else %}<|endoftext|>{% endif %}"
    )
    row = conversation(5)  # two trained turns
    examples, _ = load_examples(write_jsonl(tmp_path / "d.jsonl", [row]), tokenizer, max_seq_length=512,
                                chat_template=trailing)  # fmt: skip
    expected = [m["content"] + "<|im_end|>" for m in row["messages"] if m["role"] == "assistant" and m.get("weight", 1)]
    assert supervised_runs(tokenizer, examples[0]) == expected and len(expected) > 1
    assert tokenizer.decode(list(examples[0].input_ids)).endswith("<|endoftext|>")  # in the input, not trained


def test_template_without_end_of_turn_is_flagged(llama_model: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    bare = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    assert "end-of-turn" in (end_of_turn_warning(tokenizer, bare) or "")


def test_template_that_rewrites_history_is_refused(llama_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    # renders only the last assistant message: a prefix of the chat is not a prefix of the text
    odd = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}{{ m['content'] }}|{% endif %}"
        "{% endfor %}"
    )
    path = write_jsonl(tmp_path / "d.jsonl", [conversation(2)])
    with pytest.raises(DataError, match=r"d.jsonl:1: the chat template"):
        load_examples(path, tokenizer, max_seq_length=512, chat_template=odd)


def test_truncation_and_drops_are_reported(llama_model: Path, tmp_path: Path) -> None:
    tokenizer = tokenizer_of(llama_model)
    rows = [
        conversation(0),
        {"messages": [{"role": "user", "content": "x " * 200}, {"role": "assistant", "content": "y"}]},
    ]
    examples, report = load_examples(write_jsonl(tmp_path / "d.jsonl", rows), tokenizer, max_seq_length=64)
    assert report.truncated == 1 and report.dropped == 1 and len(examples) == 1
    assert all(len(e) <= 64 for e in examples)


@pytest.mark.parametrize(
    ("line", "match"),
    [("not json", "not valid JSON"), ('{"messages": []}', "non-empty 'messages'"),
     ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
     ('{"messages": [{"role": "bot", "content": "hi"}]}', "needs a role"),
     ('{"messages": [{"role": "assistant", "content": "a", "weight": 2}]}', "weight must be 0 or 1")],
)  # fmt: skip
def test_bad_lines_name_file_and_line(llama_model: Path, tmp_path: Path, line: str, match: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(conversation(0)) + "\n" + line + "\n")
    with pytest.raises(DataError, match=rf"bad.jsonl:2: .*{match}"):
        load_examples(path, tokenizer_of(llama_model), max_seq_length=512)


def test_collate_packed_and_padded_target_the_same_tokens() -> None:
    examples = [
        Example((1, 2, 3, 4), (IGNORE, IGNORE, 3, 4)),
        Example((5, 6, 7), (IGNORE, 6, 7)),
        Example((8, 9), (IGNORE, 9)),
    ]
    packed = collate(examples, packed=True, pad_id=0, pad_to=12)
    assert packed["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 0, 1, 0, 1, 2]]
    assert packed["cu_seq_lens_q"].tolist() == [0, 4, 7, 9, 12] and packed["max_length_q"] == 4
    assert "attention_mask" not in packed  # a mask would turn packed-sequence detection off
    # position i predicts token i+1: never across an example boundary, never into the filler
    assert packed["target_index"].tolist() == [1, 2, 4, 5, 7] and packed["targets"].tolist() == [3, 4, 6, 7, 9]
    padded = collate(examples, packed=False, pad_id=0)
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0]]
    assert padded["targets"].tolist() == packed["targets"].tolist()
    flat = padded["input_ids"].reshape(-1)
    assert flat[padded["target_index"] + 1].tolist() == padded["targets"].tolist()
    assert packed["num_tokens"] == padded["num_tokens"] == 9


def test_token_budget_batches_are_full_and_within_budget() -> None:
    lengths = [5, 9, 3, 7, 7, 2, 10, 1]  # 44 tokens: best-fit decreasing needs only ceil(44 / 12) = 4 rows
    batches = plan_batches(lengths, batch_size=99, tokens_per_batch=12, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 12 for b in batches) and len(batches) == 4
    assert plan_batches(lengths, batch_size=99, tokens_per_batch=12, seed=3) == batches  # deterministic
    assert plan_batches(lengths, batch_size=3, tokens_per_batch=None, seed=None) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    shuffled = [plan_batches(lengths, batch_size=3, tokens_per_batch=None, seed=s) for s in (1, 2)]
    assert shuffled[0] != shuffled[1]


def test_filler_is_cut_into_segments_no_longer_than_an_example() -> None:
    batch = collate([Example((1, 2, 3), (IGNORE, 2, 3))], packed=True, pad_id=0, pad_to=12, max_segment=4)
    assert batch["cu_seq_lens_q"].tolist() == [0, 3, 7, 11, 12]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3, 0]]
    assert batch["targets"].tolist() == [2, 3]


def test_a_reply_whose_first_token_starts_in_the_prompt_is_trained_from_it(llama_model: Path, tmp_path: Path) -> None:
    """A generation prompt ending in a space ("Assistant: "): the reply's first word takes that space."""
    template = (
        "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}User: {{ m['content'] }}\n\n"
        "{% else %}Assistant: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}Assistant: {% endif %}"
    )
    turns = [{"role": "user", "content": "reverse: alpha beta"}, {"role": "assistant", "content": "beta alpha"}]
    path = write_jsonl(tmp_path / "one.jsonl", [{"messages": turns}])
    tokenizer = tokenizer_of(llama_model)
    examples, _ = load_examples(path, tokenizer, max_seq_length=256, chat_template=template)
    assert supervised_runs(tokenizer, examples[0]) == [" beta alpha" + tokenizer.eos_token]


def test_named_chat_templates_use_the_default_one(llama_model: Path, chat_data, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = tokenizer_of(llama_model)
    own = tokenizer.chat_template
    tokenizer.chat_template = {"default": own, "tool_use": own}  # as Hermes and Command-R tokenizers ship
    tokenizer.save_pretrained(tmp_path / "named")
    named = AutoTokenizer.from_pretrained(tmp_path / "named")
    assert isinstance(named.chat_template, dict)
    examples, _ = load_examples(chat_data[0], named, max_seq_length=256)
    expected, _ = load_examples(chat_data[0], tokenizer_of(llama_model), max_seq_length=256)
    assert examples == expected
