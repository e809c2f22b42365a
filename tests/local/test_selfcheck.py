"""The check before training that the trainer's loss is the model's own (local_backend/selfcheck.py), on tiny
models of architectures that disagree with the trainer's path: one scales its logits, one lets packed examples
see each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from local_backend.config import ConfigError
from local_backend.runfiles import RunFiles
from local_backend.train import train
from tests.local.test_training import config

SMALL = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}


def other_architecture(llama_model: Path, out: Path, make_config: Any, **fields: Any) -> Path:
    """A random tiny model of another architecture, with the demo model's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama_model)
    torch.manual_seed(0)
    made = make_config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **SMALL, **fields)
    AutoModelForCausalLM.from_config(made).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def test_a_model_that_scales_its_logits_is_refused_before_any_step(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path
) -> None:
    from transformers import GraniteConfig

    granite = other_architecture(
        llama_model, tmp_path / "granite", GraniteConfig, intermediate_size=128, num_key_value_heads=2,
        logits_scaling=8.0, tie_word_embeddings=False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match=r"differs from granite's own .*logit scaling"):
        train(config(granite, chat_data, tmp_path / "run", max_steps=2))
    assert not RunFiles(tmp_path / "run").checkpoint_dirs()
    # and a user who knows better may still train
    assert (
        train(config(granite, chat_data, tmp_path / "anyway", max_steps=1, check_loss=False))["status"] == "succeeded"
    )


def test_a_model_whose_mask_lets_packed_examples_see_each_other_must_train_unpacked(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path
) -> None:
    from transformers import OPTConfig

    opt = other_architecture(llama_model, tmp_path / "opt", OPTConfig, ffn_dim=128, word_embed_proj_dim=64)
    with pytest.raises(ConfigError, match=r"packed in one row.*trainer.packing: false"):
        train(config(opt, chat_data, tmp_path / "packed", max_steps=1))
    unpacked = train(config(opt, chat_data, tmp_path / "unpacked", max_steps=1, packing=False))
    assert unpacked["status"] == "succeeded"


def test_the_check_says_what_it_compared(llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path) -> None:
    train(config(llama_model, chat_data, tmp_path / "run", max_steps=1))
    messages = [e["message"] for e in RunFiles(tmp_path / "run").read_events()]
    assert any(m.startswith("checked the trainer's loss against llama's own on 3 examples") for m in messages)


def test_sliding_windows_and_soft_capped_scores_do_not_get_the_varlen_kernel(
    llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path
) -> None:
    import torch
    from transformers import Gemma2Config, MistralConfig

    from local_backend.model import pick_attention

    small = {"intermediate_size": 128, "num_key_value_heads": 2, "head_dim": 16}
    mistral = other_architecture(llama_model, tmp_path / "mistral", MistralConfig, sliding_window=32, **small)
    gemma2 = other_architecture(llama_model, tmp_path / "gemma2", Gemma2Config, attn_logit_softcapping=50.0, **small)
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="sliding window of 32 tokens"):
        pick_attention(config(mistral, chat_data, tmp_path / "r", attention="varlen"), cpu)
    with pytest.raises(ConfigError, match="soft-caps its attention scores"):
        pick_attention(config(gemma2, chat_data, tmp_path / "r", attention="varlen"), cpu)
    assert pick_attention(config(gemma2, chat_data, tmp_path / "r"), cpu) == "eager"  # SDPA cannot soft-cap
    with pytest.raises(ConfigError, match=r"'fa4' \(FlashAttention-4\) needs a CUDA GPU"):
        pick_attention(config(llama_model, chat_data, tmp_path / "r", attention="fa4"), cpu)
    assert (
        pick_attention(config(mistral, chat_data, tmp_path / "r", max_seq_length=32, attention="varlen"), cpu)
        == "fth_varlen"
    )  # no longer
    # and both train, packed, with the loss the model's own (the check before training passes)
    for model in (mistral, gemma2):
        assert train(config(model, chat_data, tmp_path / f"run-{model.name}", max_steps=1))["status"] == "succeeded"


def test_the_check_leaves_training_as_it_was(llama_model: Path, chat_data: tuple[Path, Path], tmp_path: Path) -> None:
    """It runs in eval mode with the RNG forked: dropout masks, losses and the adapter are those of a run without."""
    from tests.local.test_training import assert_same_weights, losses

    runs = [
        train(config(llama_model, chat_data, tmp_path / str(on), max_steps=3, lora_dropout=0.1, check_loss=on))
        for on in (True, False)
    ]
    assert losses(runs[0]) == losses(runs[1])
    assert_same_weights(Path(runs[0]["adapter"]), Path(runs[1]["adapter"]), atol=0)


def test_where_the_check_cannot_run_a_config_that_scales_logits_is_named() -> None:
    from transformers import GraniteConfig, LlamaConfig

    from local_backend.selfcheck import scaled_logits

    assert scaled_logits(GraniteConfig(logits_scaling=8.0)) == "logits_scaling = 8.0"
    assert scaled_logits(GraniteConfig(logits_scaling=1.0)) is None
    assert scaled_logits(LlamaConfig()) is None
