"""QLoRA on the CPU (bitsandbytes >= 0.48 runs NF4 there): training learns, the merge on an unquantized copy
checks out, and gradients still flow through the 4-bit layers after an evaluation pass (bitsandbytes repacks
4-bit weights for CPU inference and that matmul has no backward, see model._keep_4bit_weights_trainable)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from local_backend.model import Precision, load_base_model
from local_backend.train import train
from tests.local.test_training import config

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")


def test_qlora_learns_and_merges_on_the_cpu(llama_model: Path, chat_data, tmp_path: Path) -> None:
    summary = train(config(llama_model, chat_data, tmp_path / "q", quantize="4bit", epochs=3, merge=True))
    assert summary["status"] == "succeeded" and summary["device"] == "cpu"
    assert summary["val_loss"] < 0.9 * summary["initial_val_loss"]
    assert summary["merge_check"]["top1_agreement"] > 0.9


@pytest.mark.parametrize(("quantize", "layer"), [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_gradients_flow_through_quantized_layers_after_an_evaluation(
    llama_model: Path, chat_data, tmp_path: Path, quantize: str, layer: str
) -> None:
    cfg = config(llama_model, chat_data, tmp_path / "g", quantize=quantize)
    model = load_base_model(cfg, torch.device("cpu"), Precision(torch.float32, None), "sdpa")
    ids = torch.tensor([[3, 17, 42, 99, 7, 64]])
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    model.train()
    q_proj = model.model.layers[0].self_attn.q_proj
    assert type(q_proj).__name__ == layer
    seen: list[torch.Tensor] = []  # q_proj's input: the normed hidden state, read by q, k and v (all quantized)
    q_proj.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    embeds = model.get_input_embeddings()(ids).detach().requires_grad_()
    model(inputs_embeds=embeds).logits.square().mean().backward(inputs=[embeds, *seen])
    assert seen[0].grad is not None and seen[0].grad.abs().sum() > 0


def test_an_old_bitsandbytes_on_the_cpu_is_a_config_error(
    llama_model: Path, chat_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bitsandbytes

    from local_backend.config import ConfigError
    from local_backend.model import quantization_config

    monkeypatch.setattr(bitsandbytes, "__version__", "0.43.3")
    cfg = config(llama_model, chat_data, tmp_path / "old", quantize="4bit")
    with pytest.raises(ConfigError, match=r"needs a CUDA GPU, or bitsandbytes >= 0.48 on a CPU"):
        quantization_config(cfg, torch.device("cpu"), Precision(torch.float32, None))
