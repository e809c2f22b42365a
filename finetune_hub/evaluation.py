"""Held-out prompts and the metrics `fth compare --eval` scores answers with.

A held-out file holds chat examples in any format the data layer reads (OpenAI chat JSONL, Alpaca, ShareGPT,
Vertex, ...): each example's last assistant message is the reference answer and the messages before it are the
prompt. Metrics take (prediction, reference) and
return a score in [0, 1]; ROUGE-L comes from Google's `rouge-score` package.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune_hub.errors import ConfigError, DataError, MissingDependency

Scorer = Callable[[str, str], float]

#: name → what it measures (the CLI's --metric choices)
METRICS = {
    "exact": "1 when the answer equals the reference (surrounding whitespace ignored), else 0",
    "exact-ci": "like exact, ignoring case and runs of whitespace",
    "rouge-l": "ROUGE-L F1 (longest common subsequence of words, Porter-stemmed), rouge-score package",
    "json-valid": "1 when the answer parses as JSON, else 0",
    "json-match": "1 when the answer parses as JSON equal to the reference parsed as JSON, else 0",
}


@dataclass(frozen=True)
class Prompt:
    line: int
    messages: list[dict[str, Any]]  # what the model is asked (everything before the last assistant turn)
    reference: str


def check_limit(limit: int | None) -> None:
    """A prompt limit must leave at least one prompt to ask."""
    if limit is not None and limit < 1:
        raise ConfigError(
            f"the prompt limit (--limit) must be at least 1, got {limit}", hint="give 1 or more, or leave it out"
        )


def load_prompts(path: Path, limit: int | None = None) -> list[Prompt]:
    """Prompts and reference answers from held-out chat examples (any format `fth validate` reads); errors name
    the file and line."""
    from finetune_hub.data.examples import read_examples

    check_limit(limit)
    prompts: list[Prompt] = []
    for number, record in read_examples(path):
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{path}:{number}: not a chat example", hint="held-out examples are chat examples")
        answers = [i for i, m in enumerate(messages) if isinstance(m, dict) and m.get("role") == "assistant"]
        last = answers[-1] if answers else None
        if last is None or not isinstance(messages[last].get("content"), str):
            raise DataError(
                f"{path}:{number}: no assistant message to use as the reference answer",
                hint="end each held-out example with the expected assistant reply",
            )
        if not any(isinstance(m, dict) and m.get("role") == "user" for m in messages[:last]):
            raise DataError(
                f"{path}:{number}: no user message before the reference answer: nothing to ask the model",
                hint="give each held-out example the user turn the reference answers",
            )
        asked = [  # without `weight`, a training-only field a chat API refuses
            {k: v for k, v in m.items() if k != "weight"} if isinstance(m, dict) else m for m in messages[:last]
        ]
        prompts.append(Prompt(number, asked, messages[last]["content"]))
        if len(prompts) == limit:  # checked after adding, so no example past the limit is read
            break
    if not prompts:
        raise DataError(f"{path}: no held-out examples")
    return prompts


def _json_or_none(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError is a ValueError; so is a 5000-digit number
        return False, None


def _exact(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def _exact_ci(prediction: str, reference: str) -> float:
    return float(" ".join(prediction.split()).casefold() == " ".join(reference.split()).casefold())


def _json_valid(prediction: str, reference: str) -> float:
    return float(_json_or_none(prediction)[0])


def _json_match(prediction: str, reference: str) -> float:
    ok, got = _json_or_none(prediction)
    ref_ok, want = _json_or_none(reference)
    return float(ok and ref_ok and got == want)


def _rouge_l() -> Scorer:
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise MissingDependency(
            "the rouge-l metric needs the package 'rouge-score'", hint="pip install 'finetune-hub[eval]'"
        ) from None
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return lambda prediction, reference: float(scorer.score(reference, prediction)["rougeL"].fmeasure)


def scorer(name: str) -> Scorer:
    """The scoring function for a metric name from `METRICS`."""
    simple: dict[str, Scorer] = {
        "exact": _exact,
        "exact-ci": _exact_ci,
        "json-valid": _json_valid,
        "json-match": _json_match,
    }
    if name == "rouge-l":
        return _rouge_l()
    if name not in simple:
        raise ConfigError(f"unknown metric '{name}'", hint="metrics: " + ", ".join(METRICS))
    return simple[name]
