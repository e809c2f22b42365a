"""Checks that need a CUDA GPU (skipped elsewhere): the varlen kernel, bf16 + compile training, QLoRA, late reads."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from local_backend import attention
from local_backend.late import LateRead
from local_backend.train import train
from tests.local.test_training import config, losses, paused_after_one_step

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize(("heads", "kv_heads"), [(32, 8), (14, 2)])  # Llama-3.2-1B and Qwen2.5-0.5B shapes
def test_varlen_kernel_matches_per_sequence_sdpa(heads: int, kv_heads: int) -> None:
    if not attention.kernel_available():
        pytest.skip("this torch has no torch.nn.attention.varlen")
    torch.manual_seed(0)
    lengths = [37, 300, 5, 1024, 129]
    total, dim = sum(lengths), 64
    q = torch.randn(1, heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(1, kv_heads, total, dim, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    out, _ = attention.varlen_attention(None, q, k, v, None, scaling=dim**-0.5, cu_seq_lens_q=cu, max_length_q=1024)
    out.float().square().sum().backward()
    got = (out.detach(), q.grad, k.grad, v.grad)
    q.grad = k.grad = v.grad = None
    refs = []
    for a, b in zip(cu.tolist(), cu.tolist()[1:], strict=False):
        refs.append(
            F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], is_causal=True, enable_gqa=True)
        )
    ref = torch.cat(refs, dim=2).transpose(1, 2)
    ref.float().square().sum().backward()
    for mine, theirs in zip(got, (ref.detach(), q.grad, k.grad, v.grad), strict=True):
        torch.testing.assert_close(mine.float(), theirs.float(), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize(("heads", "kv_heads"), [(32, 8), (14, 2)])
def test_flash_attention_4_matches_flash_attention_2(heads: int, kv_heads: int) -> None:
    """attention: fa4 (opt-in) against the default kernel on one packed row: outputs and gradients."""
    if why := attention.fa4_unavailable():
        pytest.skip(f"FA4 {why}")
    torch.manual_seed(0)
    lengths = [37, 300, 5, 1024, 129]
    total, dim = sum(lengths), 64
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device="cuda")
    q, k, v = (torch.randn(total, h, dim, device="cuda", dtype=torch.bfloat16) for h in (heads, kv_heads, kv_heads))
    results = []
    for kernel in (attention._KERNEL, attention.fa4_kernel()):
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        out = attention._cuda_varlen(kernel, *leaves, cu, 1024, dim**-0.5)  # type: ignore[arg-type]
        out.float().square().sum().backward()
        results.append([out.detach(), *(t.grad for t in leaves)])
    for fa2, fa4 in zip(*results, strict=True):
        torch.testing.assert_close(fa4.float(), fa2.float(), atol=3e-2, rtol=3e-2)


def test_varlen_kernel_takes_float32_inputs_under_autocast() -> None:
    """QLoRA keeps the norms in float32, so q/k/v arrive in float32 under bf16 autocast; the kernel takes only
    fp16/bf16, so the attention casts as autocast does for SDPA."""
    if not attention.kernel_available():
        pytest.skip("this torch has no torch.nn.attention.varlen")
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 12, 64, device="cuda") for _ in range(3))
    cu = torch.tensor([0, 5, 12], dtype=torch.int32, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out, _ = attention.varlen_attention(None, q, k, v, None, scaling=0.125, cu_seq_lens_q=cu, max_length_q=7)
        sdpa = F.scaled_dot_product_attention(q[:, :, :5], k[:, :, :5], v[:, :, :5], is_causal=True, scale=0.125)
    assert out.dtype == sdpa.dtype == torch.bfloat16
    torch.testing.assert_close(out[0, :5].transpose(0, 1), sdpa[0], atol=2e-2, rtol=2e-2)


def test_bf16_varlen_compiled_training_learns(any_model: Path, chat_data, tmp_path: Path) -> None:
    summary = train(
        config(any_model, chat_data, tmp_path / "run", epochs=8, tokens_per_batch=2048, max_seq_length=1024)
    )
    assert summary["device"].startswith("cuda")
    assert summary["attention"] == (attention.NAME if attention.kernel_available() else "sdpa")
    assert summary["val_loss"] < 0.8 * summary["initial_val_loss"]


def test_training_with_flash_attention_4_learns(llama_model: Path, chat_data, tmp_path: Path) -> None:
    if why := attention.fa4_unavailable():
        pytest.skip(f"FA4 {why}")
    settings = {"epochs": 8, "tokens_per_batch": 2048, "max_seq_length": 1024, "attention": "fa4"}
    summary = train(config(llama_model, chat_data, tmp_path / "run", **settings))
    assert summary["attention"] == attention.FA4_NAME
    assert summary["val_loss"] < 0.8 * summary["initial_val_loss"]


def test_a_pause_and_resume_on_the_gpu_goes_on_as_the_straight_run(
    llama_model: Path, chat_data, tmp_path: Path
) -> None:
    """The checkpoint format (whole, by-name optimizer state saved through cpu_offload; fused AdamW) on CUDA."""
    settings = {"max_steps": 4, "save_steps": 100, "tokens_per_batch": 2048, "max_seq_length": 1024}
    straight = train(config(llama_model, chat_data, tmp_path / "straight", **settings))
    assert paused_after_one_step(config(llama_model, chat_data, tmp_path / "run", **settings)).name == "step-000001"
    resumed = train(config(llama_model, chat_data, tmp_path / "run", **settings))
    assert resumed["status"] == "succeeded" and resumed["device"].startswith("cuda")
    assert losses(resumed) == pytest.approx(losses(straight), rel=1e-3)  # bf16 kernels need not be bit-exact


def test_packed_varlen_and_padded_sdpa_agree_in_bf16(llama_model: Path, chat_data, tmp_path: Path) -> None:
    packed = train(config(llama_model, chat_data, tmp_path / "packed", max_steps=3, compile=False))
    padded = train(config(llama_model, chat_data, tmp_path / "padded", max_steps=3, packing=False, compile=False))
    assert [h["loss"] for h in packed["history"]] == pytest.approx([h["loss"] for h in padded["history"]], rel=2e-2)


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes (the qlora extra)")
def test_qlora_trains(llama_model: Path, chat_data, tmp_path: Path) -> None:
    summary = train(config(llama_model, chat_data, tmp_path / "q", quantize="4bit", max_steps=6, merge=True))
    assert summary["status"] == "succeeded" and summary["merge_check"]["top1_agreement"] > 0.9


def test_a_late_read_does_not_wait_for_work_queued_after_it() -> None:
    """The log line's read waits for the step that made the values, not for the next one already queued."""
    late = LateRead(torch.arange(3, device="cuda", dtype=torch.float64) * 1.5)
    torch.cuda._sleep(2_000_000_000)  # about a second of device time, queued after the copy
    start = time.perf_counter()
    assert late.values() == [0.0, 1.5, 3.0]
    read = time.perf_counter() - start
    start = time.perf_counter()
    torch.cuda.synchronize()
    assert read < 0.1 < time.perf_counter() - start
