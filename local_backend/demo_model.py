"""Tiny DEMO models built on the spot: random weights and a tokenizer trained on your data, offline.

They are not language models: they know nothing before fine-tuning. They exist so the whole pipeline
(template, labels, packing, LoRA, checkpoints, merge) can run on a laptop CPU in seconds, in tests, the
quickstart and the benchmark's smoke mode. Two shapes: "llama" (Llama-3-style chat template, untied head)
and "qwen2" (ChatML template, tied embeddings).

    python -m local_backend.demo_model --data train.jsonl --out demo-model [--arch llama] [--hidden 64]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SPECIAL = {
    "llama": {"bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "pad": "<|finetune_right_pad_id|>",
              "extra": ["<|start_header_id|>", "<|end_header_id|>"], "template": LLAMA_TEMPLATE},
    "qwen2": {"bos": None, "eos": "<|im_end|>", "pad": "<|endoftext|>", "extra": ["<|im_start|>"],
              "template": CHATML_TEMPLATE},
}  # fmt: skip
CARD = """# DEMO MODEL (not a language model)

Random-initialised {arch}-shaped model ({params:,} parameters) with a byte-level BPE tokenizer trained on
the files it was made from. It knows nothing before fine-tuning; it exists to run finetune-hub's local
trainer end to end offline. Made by `python -m local_backend.demo_model`.
"""


def chat_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """Every message content in OpenAI chat JSONL files (the tokenizer's training text)."""
    for path in paths:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                for m in json.loads(line).get("messages", []):
                    if isinstance(m.get("content"), str):
                        yield m["content"]


def build_tokenizer(texts: Iterable[str], *, arch: str = "llama", vocab_size: int = 512) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = _SPECIAL[arch]
    tokens = [t for t in (special["bos"], special["eos"], special["pad"], *special["extra"]) if t]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(list(texts), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=special["bos"],
        eos_token=special["eos"],
        pad_token=special["pad"],
        additional_special_tokens=special["extra"],
    )
    tokenizer.chat_template = special["template"]
    return tokenizer


def build_config(tokenizer: Any, *, arch: str = "llama", hidden: int = 64, layers: int = 2, heads: int = 4,
                 kv_heads: int = 2, intermediate: int | None = None, max_positions: int = 2048) -> Any:  # fmt: skip
    from transformers import LlamaConfig, Qwen2Config

    common = {
        "vocab_size": len(tokenizer), "hidden_size": hidden, "intermediate_size": intermediate or 2 * hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
        "max_position_embeddings": max_positions, "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id, "use_cache": False,
    }  # fmt: skip
    if arch == "llama":
        return LlamaConfig(**common, tie_word_embeddings=False)
    if arch == "qwen2":
        return Qwen2Config(**common, tie_word_embeddings=True)
    raise ValueError(f"unknown demo architecture {arch!r}: llama or qwen2")


def create_demo_model(
    out_dir: str | Path,
    *,
    texts: Iterable[str] | None = None,
    data: Iterable[str | Path] = (),
    arch: str = "llama",
    vocab_size: int = 512,
    seed: int = 0,
    **shape: Any,
) -> Path:
    """Write a demo model + tokenizer to `out_dir` (idempotent for the same inputs) and return the path."""
    import torch
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    corpus = [*(texts or []), *chat_texts(data)]
    if not corpus:
        raise ValueError("give texts or data files to train the demo tokenizer on")
    tokenizer = build_tokenizer(corpus, arch=arch, vocab_size=vocab_size)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(build_config(tokenizer, arch=arch, **shape), dtype=torch.float32)
    # The default init (std 0.02) caps logits near zero behind the final norm, and LoRA leaves the output layer
    # frozen: give its rows norm ~2 so an adapter can make confident predictions.
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head.normal_(0.0, 2.0 / head.shape[1] ** 0.5)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    (out / "README.md").write_text(CARD.format(arch=arch, params=params), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local_backend.demo_model", description=__doc__.splitlines()[0])
    parser.add_argument("--data", action="append", required=True, help="chat JSONL to train the tokenizer on")
    parser.add_argument("--out", required=True)
    parser.add_argument("--arch", choices=tuple(_SPECIAL), default="llama")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = create_demo_model(
        args.out, data=args.data, arch=args.arch, vocab_size=args.vocab_size, seed=args.seed,
        hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
    )  # fmt: skip
    print(f"DEMO model (random weights, not a language model) written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
