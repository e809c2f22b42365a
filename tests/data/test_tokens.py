"""Token counting: the fast tiktoken counter equals tiktoken itself, OpenAI's chat framing, local Hugging Face
tokenizers, and the labelled approximation when nothing exact can be loaded offline."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune_hub.data import stats
from finetune_hub.data.tokens import (
    CL100K_PATTERN,
    O200K_PATTERN,
    ApproximateCounter,
    HFCounter,
    TiktokenCounter,
    counter_for,
    encoding_for,
)
from tests.data.conftest import chat, write_lines


def small_ranks() -> dict[bytes, int]:
    """Bytes, plus multi-byte tokens for words, leading-space words and whitespace runs, so that cutting a
    text in the wrong place would change the count."""
    pieces = [bytes([b]) for b in range(256)]
    words = ["the", "cat", "sat", "on", "mat", "It", "is", "'s", "12", "123", "中文", "é"]
    for word in words:
        raw = word.encode()
        pieces += [raw[:k] for k in range(2, len(raw) + 1)] + [b" " + raw[:k] for k in range(1, len(raw) + 1)]
    pieces += [b"  ", b"   ", b" \n", b"\n\n", b"\t\t", b".\n", b" .", b"!!", " \u3000".encode()]
    return {piece: rank for rank, piece in enumerate(dict.fromkeys(pieces))}


ENCODINGS = {
    name: tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=small_ranks(), special_tokens={})
    for name, pattern in (("o200k_base", O200K_PATTERN), ("cl100k_base", CL100K_PATTERN))
}
ALPHABET = [
    "the",
    "cat",
    "sat",
    " ",
    "  ",
    "   ",
    "\n",
    "\t",
    "\u3000",
    "\u00a0",
    "It's",
    "12345",
    ".",
    "!",
    "中文",
    "é",
    "\r\n",
    "😀",
    "A",
    "ok",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(ALPHABET), max_size=40).map("".join), st.sampled_from(sorted(ENCODINGS)))
def test_fast_counter_equals_tiktoken(text: str, name: str) -> None:
    encoding = ENCODINGS[name]
    counter = TiktokenCounter(encoding)
    assert counter.split  # the fast path is on for these patterns
    assert counter.count_text(text) == len(encoding.encode_ordinary(text))
    assert counter.count_text(text) == len(encoding.encode_ordinary(text))  # again, from the memo


def test_fast_path_is_off_for_unknown_patterns() -> None:
    encoding = tiktoken.Encoding("other", pat_str=r"\S+|\s+", mergeable_ranks=small_ranks(), special_tokens={})
    assert not TiktokenCounter(encoding).split


def test_chat_framing_follows_the_openai_recipe() -> None:
    encoding = ENCODINGS["o200k_base"]
    counter = TiktokenCounter(encoding)
    record = {
        "messages": [
            {"role": "system", "content": "It is"},
            {"role": "user", "content": "the cat", "name": "sat"},
            {"role": "assistant", "content": "on the mat"},
        ]
    }
    expected = 3  # priming
    for m in record["messages"]:
        expected += 3 + sum(len(encoding.encode_ordinary(v)) for v in m.values()) + (1 if "name" in m else 0)
    total, trained = counter.example(record, "chat")
    assert total == expected
    assert trained == 3 + len(encoding.encode_ordinary("assistant")) + len(encoding.encode_ordinary("on the mat"))


def test_offline_openai_models_get_a_labelled_approximation() -> None:
    counter = counter_for("gpt-4o-mini-2024-07-18", "openai")
    assert isinstance(counter, ApproximateCounter) and not counter.exact
    assert "o200k_base" in counter.name and "TIKTOKEN_CACHE_DIR" in counter.name  # how to get exact counts
    assert "no offline tokenizer" in counter_for("gemini-2.5-flash", "vertex").name
    assert encoding_for("gpt-4o") == encoding_for("gpt-4.1-mini") == encoding_for("o4-mini") == "o200k_base"
    assert encoding_for("gpt-3.5-turbo") == encoding_for("ft:gpt-4-0613:org::x") == "cl100k_base"


def test_approximation_handles_non_ascii() -> None:
    counter = ApproximateCounter("test")
    assert counter.count_text("abcdefgh") == 2
    assert counter.count_text("中文中文") == 3  # 12 UTF-8 bytes


def test_tiktoken_file_gives_exact_offline_counts(tmp_path: Path) -> None:
    ranks = small_ranks()
    path = tmp_path / "o200k_base.tiktoken"
    path.write_text("".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ranks.items()))
    data = write_lines(tmp_path / "d.jsonl", [chat(i) for i in range(5)])
    result = stats(data, model=str(path))
    assert result.exact and "o200k_base" in result.counter
    encoding = ENCODINGS["o200k_base"]
    assert result.tokens == sum(TiktokenCounter(encoding).example(chat(i), "chat")[0] for i in range(5))


def tiny_hf_tokenizer(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "<s>", "</s>", "You", "answer", "with", "the", "capital", "city", "only.", "Capital", "of"]
    words += ["country", "number", "City", "user", "assistant", "system", ":"] + [f"{i}?" for i in range(5)]
    words += [str(i) for i in range(5)]
    model = models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]")
    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    tokenizer.save_pretrained(str(folder))
    return folder


def test_local_hugging_face_tokenizer_counts_the_rendered_chat(tmp_path: Path) -> None:
    folder = tiny_hf_tokenizer(tmp_path / "tok")
    counter = counter_for(str(folder))
    assert isinstance(counter, HFCounter) and counter.exact and counter.templated
    data = write_lines(tmp_path / "d.jsonl", [chat(i) for i in range(3)])
    result = stats(data, model=str(folder))
    assert result.exact and str(folder) in result.counter
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    expected = [
        len(
            tokenizer(tokenizer.apply_chat_template(chat(i)["messages"], tokenize=False), add_special_tokens=False)[
                "input_ids"
            ]
        )
        for i in range(3)
    ]
    assert list(result.token_counts) == expected


def test_unloadable_local_tokenizer_falls_back_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    counter = counter_for(str(tmp_path / "broken"))
    assert not counter.exact and "could not be loaded" in counter.name


def test_memo_stays_bounded() -> None:
    counter = TiktokenCounter(ENCODINGS["o200k_base"])
    counter._spaced.limit = 10
    for word in itertools.islice(itertools.product("abc", repeat=4), 50):
        counter.count_text("x " + "".join(word))
    assert len(counter._spaced) == 10


@pytest.mark.parametrize("text", ["a  b", "a \nb", "end ", "a \u3000b"])
def test_texts_with_space_runs_are_encoded_whole(text: str) -> None:
    encoding = ENCODINGS["cl100k_base"]
    assert TiktokenCounter(encoding).count_text(text) == len(encoding.encode_ordinary(text))


def test_a_chat_template_that_refuses_an_example_is_a_finding_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoTokenizer

    from finetune_hub.cli import main
    from finetune_hub.errors import DataError

    folder = tiny_hf_tokenizer(tmp_path / "tok")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.chat_template = (  # as Mistral's and Gemma's templates do
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        "{% for m in messages %}<s> {{ m['content'] }} </s> {% endfor %}"
    )
    tokenizer.save_pretrained(str(folder))
    data = write_lines(tmp_path / "d.jsonl", [{"messages": chat(0)["messages"][1:]}, chat(1)])

    assert main(["validate", str(data), "--model", str(folder), "--for", "local", "--json"]) == 2
    (hit,) = [f for f in json.loads(capsys.readouterr().out)["findings"] if f["rule"] == "tokens.template_error"]
    assert hit["line"] == 2 and hit["severity"] == "error" and "System role not supported" in hit["message"]
    with pytest.raises(DataError, match=r"d\.jsonl:2: .*System role not supported"):
        stats(data, model=str(folder))
    assert main(["stats", str(data), "--model", str(folder)]) == 2


def test_hugging_face_counts_leave_weight_0_turns_out_of_the_trained_tokens(tmp_path: Path) -> None:
    folder = tiny_hf_tokenizer(tmp_path / "tok")
    messages = [
        {"role": "user", "content": "Capital of country number 1?"},
        {"role": "assistant", "content": "City 1 City 1 City 1", "weight": 0},
        {"role": "user", "content": "Capital of country number 2?"},
        {"role": "assistant", "content": "City 2"},
    ]
    data = write_lines(tmp_path / "d.jsonl", [{"messages": messages}])
    assert stats(data, model=str(folder)).assistant_tokens == 2  # "City 2"; the weight-0 turn is prompt
