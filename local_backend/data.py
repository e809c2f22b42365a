"""Chat JSONL → token ids and labels, and labels → batches.

Correctness rules this module owns (local-training.md §3):
- loss only on assistant turns: their content and the end-of-turn marker the template puts after them;
  system, user, tool and template tokens get -100, and so do assistant turns with `"weight": 0`;
- labels are built before padding, so a pad token equal to EOS never hides the EOS the model must learn;
- packed rows restart `position_ids` per example and never pass an `attention_mask` (no cross-attention),
  and the first token of each example is -100 so no example learns to predict its neighbour.

Assistant spans come from rendering the template twice per assistant turn (the conversation up to the
turn with a generation prompt, then including the turn): the text in between is what the model must
produce. This works with any template that renders a prefix of a conversation as a prefix of its text.
"""

from __future__ import annotations

import bisect
import functools
import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

IGNORE = -100

# Used only when the tokenizer has no chat template (base models). Documented in docs/local.md: each turn is
# "<|role|>\n" + content + EOS + "\n"; the EOS after an assistant turn is supervised, so the model learns to stop.
FALLBACK_TEMPLATE = (
    "{% if bos_token %}{{ bos_token }}{% endif %}"
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] or '' }}"
    "{% if m['tool_calls'] %}{{ m['tool_calls'] | tojson }}{% endif %}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ROLES = ("system", "user", "assistant", "tool", "developer")


class DataError(ValueError):
    """The training data cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class Example:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # unshifted (labels[i] is input_ids[i] where supervised); labels[0] is always -100

    def __len__(self) -> int:
        return len(self.input_ids)

    @cached_property
    def supervised(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE)


@dataclass
class DataReport:
    """What loading did to the file: counts a user should see before spending GPU hours."""

    path: str
    examples: int = 0
    tokens: int = 0
    supervised: int = 0
    truncated: int = 0
    dropped: int = 0  # no supervised token left (all weight 0, or truncated away)
    template: str = "tokenizer"  # "tokenizer" | "fallback" | "config"
    warnings: list[str] | None = None

    def summary(self) -> str:
        share = self.supervised / max(self.tokens, 1)
        return (
            f"{self.path}: {self.examples} examples, {self.tokens} tokens, {self.supervised} supervised "
            f"({share:.0%}); {self.truncated} truncated, {self.dropped} dropped; chat template: {self.template}"
        )


# -- reading ------------------------------------------------------------------------------------------------


def read_chat_jsonl(path: str | Path) -> Iterator[tuple[int, list[dict[str, Any]], list[Any] | None]]:
    """(line number, messages, tools) per example; malformed lines raise DataError with file:line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    with open(path, "rb") as fh:
        for number, raw in _numbered_lines(fh, path):
            if not raw.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg}); fix or remove the line") from None
            messages = record.get("messages") if isinstance(record, dict) else None
            if not isinstance(messages, list) or not messages:
                raise DataError(f"{where}: needs a non-empty 'messages' list (OpenAI chat format)")
            for i, m in enumerate(messages):
                if not isinstance(m, dict) or m.get("role") not in ROLES:
                    raise DataError(f"{where}: messages[{i}] needs a role, one of {', '.join(ROLES)}")
                if not isinstance(m.get("content"), str) and not m.get("tool_calls"):
                    raise DataError(f"{where}: messages[{i}] needs string content (or tool_calls)")
                if m.get("weight", 1) not in (0, 1):
                    raise DataError(f"{where}: messages[{i}].weight must be 0 or 1")
            if not any(m["role"] == "assistant" for m in messages):
                raise DataError(f"{where}: no assistant message, so nothing to learn; add one or drop the line")
            yield number, messages, record.get("tools")


def _numbered_lines(fh: Any, path: Path) -> Iterator[tuple[int, str]]:
    """The file's lines, decoded one by one so that a line that is not UTF-8 is named exactly."""
    for number, line in enumerate(fh, start=1):
        try:
            yield number, line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{path}:{number}: not UTF-8 text; convert the file to UTF-8") from None


# -- rendering and labels -------------------------------------------------------------------------------------


def template_text(override: str, base: Path | None = None) -> str:
    """A chat template given as Jinja text, or as the path of a file holding it (a relative one found in `base`
    first, where it is there: the spec's folder)."""
    if "{{" in override or "{%" in override:
        return override
    path = Path(override).expanduser()
    if base is not None and not path.is_absolute() and (base / path).is_file():
        path = base / path
    if not path.is_file():
        raise DataError(f"chat_template: no template file {path} (give a path to a Jinja file, or the template)")
    return path.read_text(encoding="utf-8")


def resolve_template(tokenizer: Any, override: str | None) -> tuple[str, str]:
    """(template, where it came from): the config's override (Jinja text, or the path of a file holding it), the
    tokenizer's own, or the fallback."""
    if override:
        return template_text(override), "config"
    own = getattr(tokenizer, "chat_template", None)
    if isinstance(own, dict):  # named templates (Hermes, Command-R): the one transformers uses by default
        if not isinstance(own.get("default"), str):
            raise DataError(f"the tokenizer has chat templates {sorted(own)} and no 'default': set `chat_template`")
        return own["default"], "tokenizer"
    if own:
        return own, "tokenizer"
    return FALLBACK_TEMPLATE, "fallback"


def render(tokenizer: Any, template: str, messages: list[dict[str, Any]], tools: Any, generation: bool) -> str:
    clean = [{k: v for k, v in m.items() if k != "weight"} for m in messages]
    text = tokenizer.apply_chat_template(
        clean, tools=tools, chat_template=template, tokenize=False, add_generation_prompt=generation
    )
    return str(text)


@functools.lru_cache(maxsize=4)  # one template per run (two with `fth compare`): asked for every conversation
def conversation_trailer(tokenizer: Any, template: str) -> str:
    """What the template writes after a whole conversation only (Phi-3's final EOS, say), found by rendering a
    reply with and without a message after it; "" for most templates. It ends no assistant turn, so it is neither
    trained nor taken for a rewrite of earlier turns."""
    reply = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}]
    alone = render(tokenizer, template, reply, None, generation=False)
    followed = render(tokenizer, template, [*reply, {"role": "user", "content": "q"}], None, generation=False)
    pairs = zip(alone, followed, strict=False)
    shared = next((i for i, (a, b) in enumerate(pairs) if a != b), min(len(alone), len(followed)))
    if shared == len(alone) or not getattr(tokenizer, "is_fast", False):
        return ""
    offsets = tokenizer(alone, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    start = next((a for a, b in offsets if b > shared), shared)  # the whole token where the texts part
    return alone[start:]


def assistant_spans(
    tokenizer: Any, template: str, messages: list[dict[str, Any]], tools: Any = None, where: str = ""
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans the model must produce (trained turns only)."""
    trailer = conversation_trailer(tokenizer, template)
    full = render(tokenizer, template, messages, tools, generation=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or message.get("weight", 1) == 0:
            continue
        prompt = render(tokenizer, template, messages[:i], tools, generation=True)
        upto = render(tokenizer, template, messages[: i + 1], tools, generation=False)
        upto = upto.removesuffix(trailer) if trailer else upto
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise DataError(
                f"{where}: the chat template does not render a conversation's start as the start of its text "
                f"(assistant turn {i}), so assistant tokens cannot be located; set `chat_template` in the config"
            )
        names = [c.get("function", {}).get("name", "") for c in message.get("tool_calls") or []]
        if any(name not in upto[len(prompt) :] for name in names):
            raise DataError(
                f"{where}: the chat template drops assistant turn {i}'s tool_calls, so the model would learn to "
                "answer without calling the tool; set `chat_template` to one that renders tool calls"
            )
        end = len(upto.rstrip())  # keep the end-of-turn marker, drop the newline after it
        if end > len(prompt):
            spans.append((len(prompt), end))
    return full, spans


def tokenize_with_labels(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """Token ids of `text` and labels: a token is supervised when it overlaps a span (a reply's first word may
    start in the prompt, when the prompt ends in a space the word's token takes)."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        labels = [
            tok if any(start < b and end > a for a, b in spans) else IGNORE
            for tok, (start, end) in zip(ids, enc["offset_mapping"], strict=True)
        ]
        return ids, labels
    # Slow tokenizers have no offsets: tokenize the pieces between span boundaries one by one.
    ids, labels, cursor = [], [], 0
    for a, b in [*spans, (len(text), len(text))]:
        for piece, supervised in ((text[cursor:a], False), (text[a:b], True)):
            if piece:
                part = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids += part
                labels += part if supervised else [IGNORE] * len(part)
        cursor = b
    return ids, labels


def load_examples(
    path: str | Path, tokenizer: Any, *, max_seq_length: int, chat_template: str | None = None
) -> tuple[list[Example], DataReport]:
    template, source = resolve_template(tokenizer, chat_template)
    report = DataReport(path=str(path), template=source, warnings=[])
    examples = []
    for number, messages, tools in read_chat_jsonl(path):
        try:
            text, spans = assistant_spans(tokenizer, template, messages, tools, where=f"{path}:{number}")
        except DataError:
            raise
        except Exception as exc:  # the template's own checks (jinja raise_exception), malformed tools, or no
            # plain user/assistant exchange at all (the trailer probe)
            raise DataError(
                f"{path}:{number}: the chat template cannot render this conversation ({type(exc).__name__}: {exc}); "
                "fix the line, or set `chat_template` to a template that accepts it"
            ) from None
        ids, labels = tokenize_with_labels(tokenizer, text, spans)
        if len(ids) > max_seq_length:
            ids, labels = ids[:max_seq_length], labels[:max_seq_length]
            report.truncated += 1
        labels[0] = IGNORE
        example = Example(tuple(ids), tuple(labels))
        if example.supervised == 0:
            report.dropped += 1
            continue
        examples.append(example)
        report.examples += 1
        report.tokens += len(example)
        report.supervised += example.supervised
    if not examples:
        raise DataError(f"{path}: no example has a trained assistant token (check weights and max_seq_length)")
    if report.truncated:
        report.warnings.append(f"{report.truncated} example(s) longer than max_seq_length={max_seq_length} were cut")
    return examples, report


def render_sample(tokenizer: Any, example: Example, width: int = 4000) -> str:
    """The example as the model sees it, supervised text between ⟦ and ⟧: the check a user can read."""
    out, inside = [], False
    for tok, label in zip(example.input_ids, example.labels, strict=True):
        supervised = label != IGNORE
        if supervised != inside:
            out.append("⟦" if supervised else "⟧")
            inside = supervised
        out.append(tokenizer.decode([tok]))
    if inside:
        out.append("⟧")
    return "".join(out)[:width]


def end_of_turn_warning(tokenizer: Any, template: str) -> str | None:
    """A warning when the template puts nothing after an assistant turn: the model would never learn to stop."""
    probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "ANSWER"}]
    text, spans = assistant_spans(tokenizer, template, probe)
    if spans and text[spans[0][0] : spans[0][1]].rstrip().endswith("ANSWER"):
        return "the chat template adds no end-of-turn token after assistant turns; the model will not learn to stop"
    return None


# -- batching ---------------------------------------------------------------------------------------------


def plan_batches(
    lengths: Sequence[int], *, batch_size: int, tokens_per_batch: int | None, seed: int | None
) -> list[list[int]]:
    """Micro-batches as lists of example indices, a pure function of the arguments.

    `tokens_per_batch` None: the examples in `seed`-shuffled order (None keeps file order), `batch_size` each.
    Otherwise rows of at most `tokens_per_batch` tokens, filled best-fit-decreasing (as TRL's "bfd" packing:
    rows come out ~99% full instead of ~94% for in-order filling), then shuffled by `seed`.
    """
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if seed is not None:
        rng.shuffle(order)
    if tokens_per_batch is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rows: list[list[int]] = []
    space: list[tuple[int, int]] = []  # (free tokens, row), sorted: the tightest row that fits is a bisect away
    for i in sorted(order, key=lambda i: -lengths[i]):
        k = bisect.bisect_left(space, (lengths[i], -1))
        if k < len(space):
            free, row = space.pop(k)
            rows[row].append(i)
        else:
            free, row = tokens_per_batch, len(rows)
            rows.append([i])
        bisect.insort(space, (free - lengths[i], row))
    if seed is not None:
        rng.shuffle(rows)
    return rows


def collate(
    examples: Sequence[Example], *, packed: bool, pad_id: int, pad_to: int | None = None, max_segment: int | None = None
) -> dict[str, Any]:
    """Tensors for one micro-batch, built on the CPU (no device syncs later).

    packed: one row (1, T): `position_ids` restart per example, `cu_seq_lens_*`/`max_length_*` describe the
    segments (for varlen attention); filler segments (of at most `max_segment` tokens) pad the row to `pad_to`
    (fixed shapes for compiled code).
    padded: (B, L) right-padded with `attention_mask`.
    Both carry `target_index`/`targets`: flat positions whose next token is supervised, and that token.
    """
    import torch

    ids = [torch.tensor(e.input_ids, dtype=torch.long) for e in examples]
    labs = [torch.tensor(e.labels, dtype=torch.long) for e in examples]
    lengths = [len(e) for e in examples]
    if packed:
        filler = max(0, (pad_to or 0) - sum(lengths))
        while filler:  # segments of their own: positions restart, nothing supervised
            n = min(filler, max_segment or filler)
            ids.append(torch.full((n,), pad_id, dtype=torch.long))
            labs.append(torch.full((n,), IGNORE, dtype=torch.long))
            lengths.append(n)
            filler -= n
        input_ids, labels = torch.cat(ids)[None], torch.cat(labs)[None]
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.tensor(lengths).cumsum(0)
        starts = torch.repeat_interleave(cu[:-1].long(), torch.tensor(lengths))
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "position_ids": (torch.arange(input_ids.shape[1]) - starts)[None],
            "cu_seq_lens_q": cu,
            "cu_seq_lens_k": cu,
            "max_length_q": max(lengths),
            "max_length_k": max(lengths),
        }
    else:
        input_ids = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=pad_id)
        labels = torch.nn.utils.rnn.pad_sequence(labs, batch_first=True, padding_value=IGNORE)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(t) for t in ids], batch_first=True)
        batch = {"input_ids": input_ids, "attention_mask": mask}
    # Position i predicts token i + 1 of the same row; the last position of a row predicts nothing, and each
    # example's first label is -100, so no position predicts across an example boundary.
    following = torch.cat([labels[:, 1:], torch.full((labels.shape[0], 1), IGNORE)], dim=1).reshape(-1)
    batch["target_index"] = (following != IGNORE).nonzero().squeeze(1)
    batch["targets"] = following[batch["target_index"]]
    batch["num_tokens"] = sum(len(e) for e in examples)
    return batch
