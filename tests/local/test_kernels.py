"""The chunked loss and packed attention against plain references, on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from local_backend import attention
from local_backend.data import Example, collate
from local_backend.loss import linear_cross_entropy


@pytest.mark.parametrize(("chunk", "weight_grad"), [(7, False), (64, True), (5, True)])
def test_chunked_cross_entropy_matches_full_logits(chunk: int, weight_grad: bool) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(23, 16, dtype=torch.float64, requires_grad=True)
    head = torch.nn.Linear(16, 50, bias=False).double()
    head.weight.requires_grad_(weight_grad)
    targets = torch.randint(0, 50, (23,))
    got = linear_cross_entropy(hidden, head, targets, chunk=chunk)
    (got * 0.5).backward()
    grads = (hidden.grad.clone(), head.weight.grad.clone() if weight_grad else None)
    hidden.grad, head.weight.grad = None, None
    want = F.cross_entropy(head(hidden), targets, reduction="sum")
    (want * 0.5).backward()
    torch.testing.assert_close(got, want.float(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grads[0], hidden.grad)
    if weight_grad:
        torch.testing.assert_close(grads[1], head.weight.grad)


def test_other_heads_take_the_checkpointed_path() -> None:
    torch.manual_seed(1)
    hidden = torch.randn(10, 8, requires_grad=True)
    head = torch.nn.Linear(8, 30)  # a bias: not the fused path
    targets = torch.randint(0, 30, (10,))
    got = linear_cross_entropy(hidden, head, targets, chunk=3, softcap=5.0)
    want = F.cross_entropy(torch.tanh(head(hidden) / 5.0) * 5.0, targets, reduction="sum")
    torch.testing.assert_close(got, want)
    assert linear_cross_entropy(hidden[:0], head, targets[:0]).item() == 0.0


def _examples(vocab: int) -> list[Example]:
    g = torch.Generator().manual_seed(3)
    lengths = [9, 4, 13, 6]
    return [Example(tuple(torch.randint(5, vocab, (n,), generator=g).tolist()), (-100,) * n) for n in lengths]


@pytest.mark.parametrize("impl", ["sdpa", attention.NAME])
def test_packed_rows_do_not_cross_attend(any_model: Path, impl: str) -> None:
    from transformers import AutoModelForCausalLM

    attention.register()
    model = AutoModelForCausalLM.from_pretrained(any_model, attn_implementation=impl).eval()
    examples = _examples(model.config.vocab_size)
    keys = ("position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")
    with torch.no_grad():
        packed = collate(examples, packed=True, pad_id=0, pad_to=40)
        logits = model(input_ids=packed["input_ids"], use_cache=False, **{k: packed[k] for k in keys}).logits[0]
        start = 0
        for e in examples:  # each example alone, unpacked, through plain SDPA
            alone = model(input_ids=torch.tensor([e.input_ids]), use_cache=False).logits[0]
            torch.testing.assert_close(logits[start : start + len(e)], alone, atol=2e-5, rtol=1e-4)
            start += len(e)


def test_fused_lora_layers_match_peft(any_model: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from local_backend.lora_fused import fuse_lora_layers

    def model_and_grads(fused: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        base = AutoModelForCausalLM.from_pretrained(any_model)
        peft = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
        for name, p in peft.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero; make the adapter do something
                torch.nn.init.normal_(p, std=0.1)
        if fused:
            assert fuse_lora_layers(peft) == 7 * 2  # q k v o gate up down, in each of the 2 layers
        ids = torch.tensor([[3, 17, 42, 99, 7, 64, 5, 8]])
        logits = peft(input_ids=ids).logits
        logits.square().mean().backward()
        return logits.detach(), {n: p.grad.clone() for n, p in peft.named_parameters() if p.grad is not None}

    plain_logits, plain_grads = model_and_grads(False)
    fused_logits, fused_grads = model_and_grads(True)
    torch.testing.assert_close(fused_logits, plain_logits, atol=1e-5, rtol=1e-5)
    assert fused_grads.keys() == plain_grads.keys() and len(plain_grads) == 2 * 7 * 2
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-6, rtol=1e-4, msg=name)


def test_fused_lora_leaves_other_layers_alone(llama_model: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from local_backend.lora_fused import fuse_lora_layers

    base = AutoModelForCausalLM.from_pretrained(llama_model)
    with_dropout = get_peft_model(base, LoraConfig(r=4, lora_dropout=0.1, target_modules="all-linear"))
    assert fuse_lora_layers(with_dropout) == 0
    trained_base = get_peft_model(
        AutoModelForCausalLM.from_pretrained(llama_model),
        LoraConfig(r=4, lora_dropout=0.0, target_modules="all-linear"),
    )
    trained_base.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight.requires_grad_(True)
    assert fuse_lora_layers(trained_base) == 7 * 2 - 1  # that layer keeps PEFT's forward


def test_fused_lora_rounds_like_peft_in_bf16() -> None:
    """Folding the adapter into the weight must not cost precision: under bf16 autocast the fused layer's output
    and gradients are as close to a float64 reference as PEFT's own bf16 path."""
    from peft import LoraConfig, get_peft_model

    from local_backend.lora_fused import fuse_lora_layers

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(512, 384, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.proj(x)

    def run(fused: bool) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)
        block = Block().to(torch.bfloat16)
        torch.nn.init.normal_(block.proj.weight, std=0.02)
        model = get_peft_model(block, LoraConfig(r=8, lora_alpha=16, target_modules=["proj"]))
        layer = model.base_model.model.proj
        torch.nn.init.normal_(layer.lora_B["default"].weight, std=1e-2)  # a trained adapter, small next to W
        if fused:
            assert fuse_lora_layers(model) == 1
        x = torch.randn(256, 512, dtype=torch.bfloat16, requires_grad=True)
        dy = torch.randn(256, 384, dtype=torch.bfloat16)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
        y.backward(dy)
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        return y.detach(), x.grad, a.grad, b.grad, x.detach(), dy, layer.base_layer.weight.detach(), a, b

    def reference(x: torch.Tensor, dy: torch.Tensor, w: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> tuple:
        x, dy, w, a, b = (t.detach().double() for t in (x, dy, w, a, b))
        w_eff = w + 2.0 * b @ a
        return x @ w_eff.t(), dy @ w_eff, 2.0 * (dy @ b).t() @ x, 2.0 * dy.t() @ (x @ a.t())

    *peft_out, x, dy, w, a, b = run(fused=False)
    *fused_out, _, _, _, _, _ = run(fused=True)
    want = reference(x, dy, w, a, b)
    for name, p, f, r in zip(("y", "dx", "dA", "dB"), peft_out, fused_out, want, strict=True):
        peft_err = float((p.double() - r).norm() / r.norm())
        fused_err = float((f.double() - r).norm() / r.norm())
        assert fused_err <= 1.25 * peft_err + 1e-4, (name, fused_err, peft_err)
