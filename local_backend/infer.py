"""Greedy generation with a base model (optionally plus a LoRA adapter), and a before/after comparison.

    python -m local_backend.infer --model BASE --adapter RUN/adapter --data test.jsonl

prints, for each held-out example, the reference answer and what the base model and the fine-tuned model
reply, then exact-match accuracy and the mean loss on the reference answers for both.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import torch

from local_backend.data import assistant_spans, read_chat_jsonl, render, resolve_template, tokenize_with_labels


@functools.lru_cache(maxsize=1)  # `fth compare` asks one model every prompt, then the next
def load(model: str, adapter: str | None = None) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(adapter or model)
    lm = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
    if adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, adapter)
    return lm.eval(), tokenizer


@torch.no_grad()
def reply(lm: Any, tokenizer: Any, messages: list[dict[str, Any]], max_new_tokens: int = 64) -> str:
    template, _ = resolve_template(tokenizer, None)  # the adapter's tokenizer carries the training template
    text = render(tokenizer, template, messages, None, generation=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"].to(lm.device)
    out = lm.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return str(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)).strip()


def generate(
    model: str, messages: list[dict[str, Any]], *, adapter: str | None = None, max_new_tokens: int = 256
) -> str:
    lm, tokenizer = load(model, adapter)
    return reply(lm, tokenizer, messages, max_new_tokens)


@torch.no_grad()
def answer_loss(lm: Any, tokenizer: Any, messages: list[dict[str, Any]]) -> float:
    """Mean cross-entropy of the assistant turns given the rest (what training lowers)."""
    template, _ = resolve_template(tokenizer, None)
    text, spans = assistant_spans(tokenizer, template, messages)
    ids, labels = tokenize_with_labels(tokenizer, text, spans)
    out = lm(input_ids=torch.tensor([ids], device=lm.device), labels=torch.tensor([labels], device=lm.device))
    return float(out.loss)


def compare(model: str, adapter: str, data: str, *, limit: int = 20, show: int = 5) -> dict[str, dict[str, float]]:
    """Exact match of the last assistant turn and answer loss, base model vs base + adapter."""
    examples = [m for _, m, _ in read_chat_jsonl(data)][:limit]
    results: dict[str, dict[str, float]] = {}
    replies: dict[str, list[str]] = {}
    for name, adapter_dir in (("before (base model)", None), ("after (fine-tuned)", adapter)):
        lm, tokenizer = load(model, adapter_dir)
        got = [reply(lm, tokenizer, ex[:-1], max_new_tokens=24) for ex in examples]
        exact = sum(g == ex[-1]["content"].strip() for g, ex in zip(got, examples, strict=True))
        loss = sum(answer_loss(lm, tokenizer, ex) for ex in examples) / len(examples)
        results[name] = {"exact_match": exact / len(examples), "answer_loss": loss}
        replies[name] = got
    for i, ex in enumerate(examples[:show]):
        print(f"\n[{i}] {ex[-2]['content']}\n  reference: {ex[-1]['content']}")
        for name in results:
            print(f"  {name:20}: {replies[name][i]}")
    print()
    for name, r in results.items():
        print(f"{name:20}  exact match {r['exact_match']:6.1%}   answer loss {r['answer_loss']:.3f}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_backend.infer", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="base model directory or Hub id")
    parser.add_argument("--adapter", required=True, help="the run's adapter directory")
    parser.add_argument("--data", required=True, help="held-out chat JSONL; the last assistant turn is the reference")
    parser.add_argument("--limit", type=int, default=20)
    args = parser.parse_args(argv)
    compare(args.model, args.adapter, args.data, limit=args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
