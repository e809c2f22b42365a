"""Token counting per target model: tiktoken for OpenAI/Azure models, the model's own Hugging Face tokenizer for
local paths, and a clearly labelled approximation where no tokenizer can be loaded offline.

Chat framing follows OpenAI's published counting recipe (cookbook "How to count tokens with tiktoken"): every
message value (role, content, name) is encoded, plus 3 tokens per message, 1 more per `name`, 3 to prime the
reply. tiktoken and transformers are imported only when a counter is built, never at module import.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from finetune_hub.data.findings import RecordError

Record = dict[str, Any]
TOKENS_PER_MESSAGE, TOKENS_PER_NAME, REPLY_PRIMING = 3, 1, 3
_SHORT_TEXT, _TEXT_MEMO = 1024, 8192  # whole texts remembered: up to 8,192 of at most 1,024 characters
_ROLE_MEMO = 64  # roles remembered (a file may hold any number of bad ones)
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


class TokenCounter:
    """Counts tokens of canonical records. Subclasses implement `count_text`."""

    name = "base"
    exact = False

    def __init__(self) -> None:
        self._role_tokens: dict[str, int] = {}  # roles repeat in every message; counting them was 7% of the time

    def count_text(self, text: str) -> int:
        raise NotImplementedError

    def _content(self, content: Any) -> int:
        if isinstance(content, str):
            return self.count_text(content)
        if isinstance(content, list):  # parts: text counted, images at a flat 85 tokens (OpenAI's low-detail cost)
            return sum(
                self.count_text(p.get("text") or "") if p.get("type") == "text" else 85
                for p in content
                if isinstance(p, dict)
            )
        return 0

    def messages(self, messages: list[Any]) -> tuple[int, int]:
        """(all tokens, tokens in trained assistant turns) of a messages list."""
        count, role_tokens = self.count_text, self._role_tokens
        total = trained = 0
        for m in messages:
            if type(m) is not dict:
                continue
            content, role = m.get("content"), m.get("role")
            n = TOKENS_PER_MESSAGE + (count(content) if type(content) is str else self._content(content))
            if type(role) is str:
                if (r := role_tokens.get(role)) is None:
                    r = count(role)
                    if len(role_tokens) < _ROLE_MEMO:
                        role_tokens[role] = r
                n += r
            if len(m) > 2 or "content" not in m:  # a name, tool calls (content may be left out) or a weight
                if "name" in m and isinstance(m["name"], str):
                    n += TOKENS_PER_NAME + count(m["name"])
                calls = m.get("tool_calls")
                functions = [c.get("function") if isinstance(c, dict) else None for c in calls or ()]
                if isinstance(m.get("function_call"), dict):  # the legacy single call
                    functions.append(m["function_call"])
                for fn in functions:
                    if isinstance(fn, dict):
                        n += count(str(fn.get("name", ""))) + count(str(fn.get("arguments", "")))
            total += n
            if role == "assistant" and m.get("weight", 1) != 0:
                trained += n
        return total, trained

    def example(self, record: Record, kind: str) -> tuple[int, int]:
        """(tokens, trained tokens) of one canonical record."""
        if kind == "text":
            n = self.count_text(record.get("text") or "")
            return n, n
        if kind == "preference":
            prompt = record.get("input") or {}
            p, _ = self.messages(prompt.get("messages") or [])
            c, _ = self.messages(record.get("preferred_output") or [])
            r, _ = self.messages(record.get("non_preferred_output") or [])
            tools = self._tools(prompt.get("tools"))
            return p + c + r + tools + REPLY_PRIMING, c + r
        total, trained = self.messages(record.get("messages") or [])
        return total + self._tools(record.get("tools")) + REPLY_PRIMING, trained

    def _tools(self, tools: Any) -> int:
        return self.count_text(json.dumps(tools, separators=(",", ":"))) if tools else 0


class ApproximateCounter(TokenCounter):
    """~4 characters per token for ASCII text, ~4 UTF-8 bytes per token otherwise (CJK, emoji)."""

    exact = False

    def __init__(self, why: str) -> None:
        super().__init__()
        self.name = f"approximate (~4 characters per token): {why}"

    def count_text(self, text: str) -> int:
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        return (size + 3) // 4


# tiktoken's split patterns (tiktoken_ext/openai_public.py), for encodings read from a local .tiktoken file
CL100K_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|"""
    r"""\s+(?!\S)|\s"""
)
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


class _Unsplittable(Exception):
    """A space followed by whitespace (or ending the text): not a piece boundary, so the text is encoded whole."""


class _PieceMemo(dict[str, int]):
    """Token counts of words (with `prefix` prepended), computed on first use; stops growing at `limit`
    entries, by which time the frequent words (Zipf) are in. With `spaced`, a word that is empty or starts
    with whitespace raises _Unsplittable: the space before it may belong to a whitespace piece."""

    def __init__(self, encode: Any, prefix: str, limit: int = 200_000) -> None:
        super().__init__()
        self.encode, self.prefix, self.limit = encode, prefix, limit

    def __missing__(self, word: str) -> int:
        if self.prefix and (not word or word[0].isspace()):  # isspace() covers every Unicode White_Space
            raise _Unsplittable
        n = len(self.encode(self.prefix + word))
        if len(self) < self.limit:
            self[word] = n
        return n


class TiktokenCounter(TokenCounter):
    """Exact tiktoken counts, fast: BPE runs on each piece of tiktoken's split pattern independently, and in
    the cl100k/o200k patterns a space followed by a non-space always starts a new piece. So a text is cut at
    such spaces and the counts of the (very repetitive) words are remembered; a text with a space before
    whitespace or at its end is encoded whole. tests/data/test_tokens.py checks equality with encode_ordinary."""

    exact = True

    def __init__(self, encoding: Any, label: str | None = None) -> None:
        super().__init__()
        self.encoding = encoding
        self.name = label or f"tiktoken {encoding.name}"
        self._encode = encoding.encode_ordinary
        pattern = getattr(encoding, "_pat_str", None)
        self.split = pattern in (CL100K_PATTERN, O200K_PATTERN)
        self._texts: dict[str, int] = {}
        self._first = _PieceMemo(self._encode, "")
        self._spaced = _PieceMemo(self._encode, " ")
        self._word, self._spaced_word = self._first.__getitem__, self._spaced.__getitem__

    def count_text(self, text: str) -> int:
        short = len(text) <= _SHORT_TEXT  # only short texts are remembered: a long one is not hashed for nothing
        if short and (n := self._texts.get(text)) is not None:  # roles, system prompts, templated turns
            return n
        if self.split:
            words = text.split(" ")
            try:
                n = self._word(words[0]) + sum(map(self._spaced_word, words[1:]))
            except _Unsplittable:
                n = len(self._encode(text))
        else:
            n = len(self._encode(text))
        if short and len(self._texts) < _TEXT_MEMO:
            self._texts[text] = n
        return n


class HFCounter(TokenCounter):
    """A local Hugging Face tokenizer; with a chat template, examples are counted as the trainer renders them."""

    exact = True

    def __init__(self, tokenizer: Any, label: str) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.name = label
        self.templated = bool(getattr(tokenizer, "chat_template", None))
        try:
            from jinja2 import TemplateError  # what a template raises (transformers renders them with jinja2)
        except ImportError:  # no jinja2, no rendering (transformers' chat-template extra): count by the recipe
            self.templated = False
        else:
            self._template_error: type[Exception] = TemplateError

    def count_text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def example(self, record: Record, kind: str) -> tuple[int, int]:
        if not self.templated or kind != "chat":
            return super().example(record, kind)
        messages = record.get("messages") or []
        try:
            ids = self.tokenizer.apply_chat_template(messages, tools=record.get("tools"), tokenize=True)
        except self._template_error as exc:  # e.g. raise_exception('Conversation roles must alternate ...')
            raise RecordError("tokens.template_error", f"the chat template of {self.name} refuses it: {exc}") from None
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
            ids = ids["input_ids"]
        trained = sum(  # weight-0 turns are in the prompt, not trained on (as in TokenCounter.messages)
            self.count_text(m["content"])
            for m in messages
            if isinstance(m, dict)
            and m.get("role") == "assistant"
            and m.get("weight", 1) != 0
            and isinstance(m.get("content"), str)
        )
        return len(ids), trained


def encoding_for(model: str | None) -> str:
    """The tiktoken encoding an OpenAI model uses (o200k_base for gpt-4o, gpt-4.1, o-series, gpt-5)."""
    name = (model or "").removeprefix("ft:")
    if name.startswith(("gpt-3.5", "gpt-4-", "gpt-4")) and not name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")):
        return "cl100k_base"
    return "o200k_base"


def _tiktoken_cached(encoding: str) -> bool:
    """Whether tiktoken has the encoding file on disk (same cache path rules as tiktoken.load)."""
    cache = (
        os.environ.get("TIKTOKEN_CACHE_DIR")
        or os.environ.get("DATA_GYM_CACHE_DIR")
        or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    )
    key = hashlib.sha1(_TIKTOKEN_URL.format(encoding).encode()).hexdigest()
    return os.path.exists(os.path.join(cache, key))


def tiktoken_counter(encoding: str) -> TokenCounter:
    """tiktoken's `encoding`, or the approximation with a note on getting exact counts. With FTH_OFFLINE=1
    only an encoding already in tiktoken's cache is used (no download attempt)."""
    how = (
        f"{encoding} is not available offline; for exact counts run "
        f"`python -c \"import tiktoken; tiktoken.get_encoding('{encoding}')\"` once with network access, "
        "or point TIKTOKEN_CACHE_DIR at a folder that holds it"
    )
    try:
        import tiktoken
    except ImportError:
        return ApproximateCounter("tiktoken is not installed; pip install 'finetune-hub[data]' for exact counts")
    if os.environ.get("FTH_OFFLINE") and not _tiktoken_cached(encoding):
        return ApproximateCounter(how)
    try:
        return TiktokenCounter(tiktoken.get_encoding(encoding))
    except Exception:  # any download or parse failure: fall back, and say so
        return ApproximateCounter(how)


def tiktoken_file_counter(path: Path) -> TokenCounter:
    """An encoding from a local `.tiktoken` file (e.g. a copy of o200k_base.tiktoken): exact counts offline.
    The split pattern is cl100k's for files named cl100k*, o200k's otherwise."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    pattern = CL100K_PATTERN if path.stem.startswith("cl100k") else O200K_PATTERN
    ranks = load_tiktoken_bpe(str(path))
    encoding = tiktoken.Encoding(name=path.stem, pat_str=pattern, mergeable_ranks=ranks, special_tokens={})
    return TiktokenCounter(encoding, f"tiktoken {path.stem} (from {path})")


def hf_counter(path: Path) -> TokenCounter:
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # report why, count approximately
        return ApproximateCounter(f"the tokenizer at {path} could not be loaded ({type(exc).__name__})")
    return HFCounter(tokenizer, f"Hugging Face tokenizer {path}")


def counter_for(model: str | None, provider: str | None = None) -> TokenCounter:
    """The best counter available offline for `model` on `provider`."""
    if model and Path(model).expanduser().is_dir():
        return hf_counter(Path(model).expanduser())
    if model and model.endswith(".tiktoken") and Path(model).expanduser().is_file():
        return tiktoken_file_counter(Path(model).expanduser())
    name = (model or "").removeprefix("ft:")
    openai_like = provider in ("openai", "azure_openai", "azure") or name.startswith(("gpt-", "o1", "o3", "o4"))
    if openai_like or (not model and provider is None):
        return tiktoken_counter(encoding_for(model))
    return ApproximateCounter(
        f"no offline tokenizer for {model}; pass a local Hugging Face model folder as the model for exact counts"
    )
