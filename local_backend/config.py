"""TrainConfig: everything one local training run needs, as plain JSON-ready data.

Stdlib only (no torch), so launchers (`providers/local.py`, the SageMaker entry point) can build and
check a config without the training stack installed.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUANTIZE = ("none", "4bit", "8bit")
SCHEDULERS = ("cosine", "linear", "constant")
REPORTERS = ("tensorboard", "wandb", "mlflow")
RESUME = ("auto", "never", "must")


_FREE_ON_RESUME = frozenset({
    "train_file", "validation_file", "output_dir", "attention", "compile", "fused_lora", "gradient_checkpointing",
    "fsdp", "loss_chunk_size", "check_loss", "save_steps", "save_total_limit", "eval_steps", "logging_steps",
    "report_to", "run_name", "resume", "merge", "trust_remote_code",
})  # fmt: skip


def written_as_path(model: str) -> bool:
    """A base model written as a filesystem path, never a Hub or platform id: /…, ./…, ../…, ~…"""
    return model.startswith(("/", "./", "../", "~"))


class ConfigError(ValueError):
    """A TrainConfig value is wrong; the message names the field and the fix."""


_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "a string",
          "None": "unset (null)", "list[str]": "a list of strings"}  # fmt: skip


def _plain(value: Any, type_name: str) -> tuple[bool, Any]:
    """(whether `value` has the annotated type `type_name`, one member of a union as written in the class; the
    value as a plain JSON type: a numpy number or a tuple from a Python caller becomes an int, float or list)."""
    if type_name == "None":
        return value is None, value
    if type_name == "list[str]":
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        return ok, list(value) if ok else value
    if isinstance(value, bool):
        return type_name == "bool", value
    plain = {"int": (numbers.Integral, int), "float": (numbers.Real, float), "bool": (bool, bool), "str": (str, str)}
    kind, make = plain[type_name]
    return (True, make(value)) if isinstance(value, kind) else (False, value)


@dataclass
class TrainConfig:
    """One LoRA/QLoRA fine-tuning run. Paths may be relative to the working directory."""

    model: str  # local path or Hugging Face Hub id of the base model
    train_file: str  # OpenAI chat JSONL
    output_dir: str
    validation_file: str | None = None

    # optimisation
    epochs: int = 1
    max_steps: int | None = None  # stop after this many optimizer steps (overrides epochs when smaller)
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    batch_size: int = 8  # examples per micro-batch (per device)
    grad_accumulation: int = 1  # micro-batches per optimizer step
    max_seq_length: int = 2048  # longer examples are truncated (reported)
    seed: int = 42

    # batching: packing puts the micro-batch's examples in one flattened row with per-example positions
    # (no padding, no cross-attention). `tokens_per_batch` switches to token-budget batches instead of
    # `batch_size` examples (best for throughput: fixed shapes, constant work per step).
    packing: bool = True
    tokens_per_batch: int | None = None

    # LoRA / QLoRA
    lora_rank: int = 16
    lora_alpha: int | None = None  # defaults to 2 × rank
    lora_dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    quantize: str = "none"  # "4bit" (QLoRA NF4) or "8bit": bitsandbytes on CUDA, or >= 0.48 on a CPU

    # speed knobs ("auto" = on where it helps: GPU)
    attention: str = "auto"  # "auto" | "varlen" | "fa4" | "sdpa" | "eager" | any transformers attn_implementation
    compile: str | bool = "auto"  # regional torch.compile of the decoder layers and the loss chunks
    fused_lora: str | bool = "auto"  # local_backend/lora_fused.py where it applies (dropout 0, no quantization)
    gradient_checkpointing: bool = False
    fsdp: bool = False  # with several GPUs: shard the base model across them (FSDP2), for models too big for one
    loss_chunk_size: int = 4096  # supervised tokens per chunk of the lm_head + cross-entropy
    dtype: str = "auto"  # "auto" (bf16 autocast on GPU, fp32 on CPU) | "bf16" | "fp32"
    check_loss: bool = True  # before training, compare the loss with the model's own (local_backend/selfcheck.py)

    # bookkeeping
    save_steps: int | None = None  # checkpoint every N optimizer steps (and always at the end)
    save_total_limit: int | None = 3  # keep the newest N step checkpoints
    eval_steps: int | None = None  # validation loss every N steps (also before the first and after the last)
    logging_steps: int = 1
    report_to: list[str] = field(default_factory=list)  # tensorboard | wandb | mlflow
    run_name: str | None = None
    resume: str = "auto"  # "auto": continue from the newest checkpoint in output_dir if any; "never"; "must"
    merge: bool = False  # also write a merged full model to output_dir/merged, verified by comparing logits
    chat_template: str | None = None  # a Jinja template (or a path to one) overriding the tokenizer's
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # JSON-built configs: "2e-4" or "false" must not pass as values
            value, options = getattr(self, f.name), str(f.type).split(" | ")
            checked = [plain for ok, plain in (_plain(value, t) for t in options) if ok]
            if not checked:
                hint = (
                    " (YAML reads 2e-4 as text: write 2.0e-4)" if isinstance(value, str) and "float" in options else ""
                )
                words = " or ".join(_WORDS[t] for t in options)
                raise ConfigError(f"train config: {f.name} = {value!r}: must be {words}{hint}")
            setattr(self, f.name, checked[0])
        self.validate()

    # -- checks ----------------------------------------------------------------------------------------

    def validate(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ConfigError(f"train config: {name} = {getattr(self, name)!r}: {rule}")

        need(bool(self.model), "model", "give a local path or a Hub id")
        need(bool(self.train_file), "train_file", "give an OpenAI chat JSONL file")
        need(bool(self.output_dir), "output_dir", "give a directory for checkpoints and the adapter")
        need(self.epochs >= 1, "epochs", "must be at least 1")
        need(self.max_steps is None or self.max_steps >= 1, "max_steps", "must be at least 1 (or unset)")
        need(0 < self.learning_rate < 1, "learning_rate", "must be between 0 and 1")
        need(self.lr_scheduler in SCHEDULERS, "lr_scheduler", f"one of {', '.join(SCHEDULERS)}")
        need(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)")
        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(self.grad_accumulation >= 1, "grad_accumulation", "must be at least 1")
        need(self.max_seq_length >= 16, "max_seq_length", "must be at least 16")
        need(self.tokens_per_batch is None or self.tokens_per_batch >= self.max_seq_length, "tokens_per_batch",
             "must be at least max_seq_length (one example must fit)")  # fmt: skip
        need(self.tokens_per_batch is None or self.packing, "tokens_per_batch", "needs packing = true")
        need(self.attention not in ("varlen", "fa4") or self.packing, "attention", "needs packing = true")
        need(self.lora_rank >= 1, "lora_rank", "must be at least 1")
        need(0 <= self.lora_dropout < 1, "lora_dropout", "must be in [0, 1)")
        need(self.quantize in QUANTIZE, "quantize", f"one of {', '.join(QUANTIZE)}")
        need(self.dtype in ("auto", "bf16", "fp32"), "dtype", "one of auto, bf16, fp32")
        need(self.save_steps is None or self.save_steps >= 1, "save_steps", "must be at least 1 (or unset)")
        need(self.eval_steps is None or self.eval_steps >= 1, "eval_steps", "must be at least 1 (or unset)")
        need(self.logging_steps >= 1, "logging_steps", "must be at least 1")
        need(self.save_total_limit is None or self.save_total_limit >= 1, "save_total_limit", "at least 1 (or unset)")
        need(self.weight_decay >= 0, "weight_decay", "must be at least 0")
        need(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "must be above 0 (or unset)")
        need(self.loss_chunk_size >= 1, "loss_chunk_size", "must be at least 1")
        need(self.resume in RESUME, "resume", f"one of {', '.join(RESUME)}")
        unknown = [r for r in self.report_to if r not in REPORTERS]
        need(not unknown, "report_to", f"unknown reporter(s) {unknown}; known: {', '.join(REPORTERS)}")
        need(self.compile in (True, False, "auto"), "compile", "true, false or auto")
        need(self.fused_lora in (True, False, "auto"), "fused_lora", "true, false or auto")
        need(not (self.fsdp and self.quantize != "none"), "fsdp", "does not combine with quantize (QLoRA): pick one")

    def training_identity(self) -> dict[str, Any]:
        """The settings that shape the weights a run produces: a checkpoint resumes only under the same ones
        (with the same data). Left out: paths, bookkeeping and speed knobs, which may change between attempts."""
        return {k: v for k, v in self.to_dict().items() if k not in _FREE_ON_RESUME}

    @property
    def alpha(self) -> int:
        return self.lora_alpha if self.lora_alpha is not None else 2 * self.lora_rank

    # -- (de)serialisation -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error naming the closest known key."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            import difflib

            tips = [f"{k} (did you mean {m[0]}?)" if (m := difflib.get_close_matches(k, known, n=1)) else k
                    for k in unknown]  # fmt: skip
            raise ConfigError(f"train config: unknown key(s): {', '.join(tips)}")
        missing = [k for k in ("model", "train_file", "output_dir") if k not in data]
        if missing:
            raise ConfigError(f"train config: required key(s) missing: {', '.join(missing)}")
        return cls(**data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the train config ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the train config must be a JSON object")
        return cls.from_dict(data)
