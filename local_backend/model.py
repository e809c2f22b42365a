"""Loading the base model and tokenizer, choosing attention and precision, and wrapping in LoRA."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from local_backend import attention
from local_backend.config import ConfigError, TrainConfig, written_as_path


@dataclass(frozen=True)
class Precision:
    param_dtype: torch.dtype  # the frozen base weights
    autocast: torch.dtype | None  # autocast dtype for the forward pass, None for none


def pick_device(local_rank: int = 0) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def pick_precision(cfg: TrainConfig, device: torch.device) -> Precision:
    """bf16 weights + bf16 autocast on a GPU that has bf16 (LoRA weights stay fp32: PEFT's default, so small
    updates don't underflow); fp32 elsewhere."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    if cfg.dtype == "bf16" or (cfg.dtype == "auto" and bf16):
        return Precision(torch.bfloat16, torch.bfloat16)
    return Precision(torch.float32, None)


def pick_attention(cfg: TrainConfig, device: torch.device) -> str:
    """With "auto": the varlen kernel for packed rows on CUDA, else SDPA (which, given restarting position_ids and no
    attention mask, builds a block-diagonal mask: correct, dense); eager for a model whose attention soft-caps its
    scores, which SDPA cannot. The varlen kernel attends to the whole example, so a model with a sliding window
    shorter than an example does not get it."""
    limit = _varlen_limit(cfg) if cfg.attention in ("auto", "varlen", "fa4") else None  # (else: the user's pick)
    if cfg.attention in ("varlen", "fa4") and limit:
        raise ConfigError(f"train config: attention = {cfg.attention!r}: {limit.why}; use attention: auto")
    if cfg.attention == "fa4":  # opt-in: measured once (docs/local.md), from a package still in beta
        if cfg.dtype == "fp32":  # its kernels take fp16/bf16: the call would fall back to per-example SDPA
            raise ConfigError("train config: attention = 'fa4' needs bf16 (dtype: auto or bf16), not fp32")
        if why := attention.fa4_unavailable():
            raise ConfigError(f"train config: attention = 'fa4' (FlashAttention-4) {why}; or use attention: auto")
        return attention.register(fa4=True)
    if cfg.attention == "varlen" or (cfg.attention == "auto" and cfg.packing and device.type == "cuda" and not limit):
        if cfg.attention == "auto" and not attention.kernel_available():
            return "sdpa"
        return attention.register()
    if cfg.attention == "auto":
        return "eager" if limit and limit.softcap else "sdpa"
    return cfg.attention


@dataclass(frozen=True)
class VarlenLimit:
    """Why a model's attention is not what the varlen kernel computes."""

    why: str
    softcap: bool  # soft-capped scores, which SDPA cannot do either (a sliding window, SDPA's mask can)


def _varlen_limit(cfg: TrainConfig) -> VarlenLimit | None:
    """Why the model's attention is not what the varlen kernel computes, if it is not."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    except (OSError, ValueError):  # loading the model itself will say what is wrong
        return None
    text = config.get_text_config()
    if getattr(text, "attn_logit_softcapping", None):
        return VarlenLimit(f"{text.model_type} soft-caps its attention scores, which the varlen kernel does not", True)
    window = getattr(text, "sliding_window", None)
    if getattr(text, "use_sliding_window", True) and isinstance(window, int) and 0 < window < cfg.max_seq_length:
        why = (f"{text.model_type} attends within a sliding window of {window} tokens, shorter than max_seq_length "
               f"{cfg.max_seq_length}, which the varlen kernel does not")  # fmt: skip
        return VarlenLimit(why, False)
    return None


def load_tokenizer(cfg: TrainConfig) -> Any:
    from pathlib import Path

    from transformers import AutoTokenizer

    if written_as_path(cfg.model) and not Path(cfg.model).expanduser().is_dir():
        raise ConfigError(f"train config: model = {cfg.model!r}: no such folder (a path, not a Hub id)")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token_id is None:
        # Safe: labels are built before padding, and padded positions are never supervised.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_base_model(cfg: TrainConfig, device: torch.device, precision: Precision, attn: str) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": precision.param_dtype,
        "attn_implementation": attn,
        "trust_remote_code": cfg.trust_remote_code,
    }
    if cfg.quantize != "none":
        kwargs["quantization_config"] = quantization_config(cfg, device, precision)
    if device.type == "cuda":
        kwargs["device_map"] = {"": device.index or 0}
    model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    if device.type != "cuda":
        model.to(device)
        if cfg.quantize != "none":
            _keep_4bit_weights_trainable(model)
    return model


def _keep_4bit_weights_trainable(model: Any) -> None:
    """bitsandbytes (0.50 at least) repacks a 4-bit weight for CPU inference on its first no-grad forward in eval
    mode, and the repacked matmul has no backward: later steps get no gradient through that layer, with only a
    warning. Validation runs in eval mode before training, so the repacking is switched off."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def quantization_config(cfg: TrainConfig, device: torch.device, precision: Precision) -> Any:
    try:
        import bitsandbytes
    except ImportError:
        raise ConfigError(
            f"train config: quantize = {cfg.quantize!r} needs bitsandbytes: pip install 'finetune-hub[qlora]'"
        ) from None
    cpu_support = tuple(int(p) for p in bitsandbytes.__version__.split(".")[:2] if p.isdigit()) >= (0, 48)
    if device.type != "cuda" and not cpu_support:
        raise ConfigError(
            f"train config: quantize = {cfg.quantize!r} (QLoRA) needs a CUDA GPU, or bitsandbytes >= 0.48 on a CPU "
            "(pip install -U bitsandbytes), or quantize = 'none'"
        )
    from transformers import BitsAndBytesConfig

    if cfg.quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=precision.autocast or precision.param_dtype,
    )


def apply_lora(model: Any, cfg: TrainConfig) -> Any:
    """Wrap in a PEFT LoRA model; the base model's cache is turned off (a cache disables packed masks)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model.config.use_cache = False
    if cfg.quantize != "none":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    tied = model.get_output_embeddings() is not None and model.get_output_embeddings().weight is getattr(
        model.get_input_embeddings(), "weight", None
    )
    peft_model = get_peft_model(model, lora)
    base = peft_model.get_base_model()
    adapted = [m for m in (base.get_output_embeddings(), base.get_input_embeddings()) if hasattr(m, "lora_A")]
    if cfg.merge and tied and adapted:
        raise ConfigError(
            "train config: merge = true with LoRA on the output layer or the embeddings, which this model ties "
            "together: a merge would change both. Leave lm_head and embed_tokens out of target_modules, or set "
            "merge = false"
        )
    return peft_model


def backbone_and_head(peft_model: Any) -> tuple[torch.nn.Module, torch.nn.Module, float | None]:
    """The decoder stack (hidden states out), the output layer, and any logit soft-cap, of a PEFT causal LM."""
    causal_lm = peft_model.get_base_model()
    backbone = getattr(causal_lm, causal_lm.base_model_prefix)
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    return backbone, causal_lm.get_output_embeddings(), softcap


def decoder_layers(backbone: torch.nn.Module) -> list[torch.nn.Module]:
    layers = getattr(backbone, "layers", None) or getattr(backbone, "h", None)
    return list(layers) if layers is not None else []
