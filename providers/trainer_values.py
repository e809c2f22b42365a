"""The spec in the project trainer's terms (`local_backend.config.TrainConfig` field names), for the adapters that
run that trainer: `local`, and SageMaker training jobs. Values the spec leaves unset are left out, so the
trainer's own defaults apply, except epochs (the cost estimates' assumption)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from local_backend.config import TrainConfig

if TYPE_CHECKING:
    from finetune_hub.spec import FineTuneSpec


def trainer_values(spec: FineTuneSpec, model: str) -> dict[str, Any]:
    """`learning_rate_multiplier` (OpenAI's and Vertex's knob, so their specs move here unchanged) scales the
    trainer's default learning rate; an absolute `learning_rate` wins over it."""
    from finetune_hub.data.billing import TARGET_EPOCHS  # what the estimates assume when epochs are unset

    hp = spec.hyperparameters
    learning_rate = hp.learning_rate
    if learning_rate is None and hp.learning_rate_multiplier is not None:
        learning_rate = TrainConfig.learning_rate * hp.learning_rate_multiplier
    values: dict[str, Any] = {
        "model": model,
        "epochs": hp.epochs or TARGET_EPOCHS,
        "learning_rate": learning_rate,
        "batch_size": hp.batch_size,
        "max_seq_length": hp.max_seq_length,
        "warmup_ratio": hp.warmup_ratio,
        "seed": spec.seed,
    }
    if spec.lora is not None:
        values |= {
            "lora_rank": spec.lora.rank,
            "lora_alpha": spec.lora.alpha,
            "lora_dropout": spec.lora.dropout,
            "target_modules": spec.lora.target_modules,
            "quantize": spec.lora.quantize,
        }
    return {k: v for k, v in values.items() if v is not None}


def learning_rate_warnings(spec: FineTuneSpec) -> list[str]:
    hp = spec.hyperparameters
    if hp.learning_rate is not None and hp.learning_rate_multiplier is not None:
        return ["both learning_rate and learning_rate_multiplier given: using learning_rate"]
    return []
