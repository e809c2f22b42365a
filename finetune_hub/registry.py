"""Provider name → adapter class, imported only when asked for.

Built-in adapters are listed by import string; third-party ones register under the entry-point group
`finetune_hub.providers` (`name = "package.module:Class"`), read only when a name is not built in.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from finetune_hub.errors import ConfigError, MissingDependency, ProviderRetired

if TYPE_CHECKING:
    from finetune_hub.job import FineTuneJob

ENTRY_POINT_GROUP = "finetune_hub.providers"


@dataclass(frozen=True)
class ProviderInfo:
    name: str
    target: str  # "module:Class"
    extra: str | None  # the pip extra that brings the SDK
    summary: str
    offline: bool = False  # its jobs are read from this machine's files: `fth list` refreshes them


_BUILTIN: tuple[ProviderInfo, ...] = (
    # Adapters register here as they land (one line each).
    ProviderInfo("vertex", "providers.vertex:VertexJob", "vertex", "Google Vertex AI Gemini tuning (google-genai)"),
    ProviderInfo("openai", "providers.openai:OpenAIJob", "openai", "OpenAI fine-tuning API"),
    ProviderInfo("azure_openai", "providers.azure_openai:AzureOpenAIJob", "azure", "Azure OpenAI (Foundry) v1 API"),
    ProviderInfo("sagemaker", "providers.sagemaker:SageMakerJob", "aws", "Amazon SageMaker training jobs"),
    ProviderInfo(
        "local", "providers.local:LocalJob", "local", "LoRA/QLoRA on this machine (transformers + PEFT)", True
    ),
)
BUILTIN: dict[str, ProviderInfo] = {p.name: p for p in _BUILTIN}


# Platforms whose fine-tuning API is gone: asking for them explains where to go instead.
RETIRED: dict[str, str] = {
    "gradient": "gradient.ai shut down its self-serve fine-tuning platform in 2024 "
    "(https://github.com/run-llama/llama_index/pull/15022)",
    "cohere": "Cohere deprecated fine-tuning on 2025-09-15 (https://docs.cohere.com/docs/chat-fine-tuning)",
    "mistral": "Mistral lists its fine-tuning API as deprecated with no replacement "
    "(https://docs.mistral.ai/resources/deprecated)",
    "databricks": "Databricks Foundation Model Fine-tuning was scheduled for removal on 2026-08-14",
}


def _entry_points() -> dict[str, ProviderInfo]:
    from importlib.metadata import entry_points

    return {
        ep.name: ProviderInfo(ep.name, ep.value, None, f"third-party adapter from {ep.value}")
        for ep in entry_points(group=ENTRY_POINT_GROUP)
    }


def known() -> dict[str, ProviderInfo]:
    """Every provider name that can be loaded: built in first, then entry points."""
    return {**_entry_points(), **BUILTIN}


def info(name: str) -> ProviderInfo:
    found = BUILTIN.get(name) or _entry_points().get(name)
    if found is None and name in RETIRED:
        raise ProviderRetired(
            f"provider '{name}' is retired: {RETIRED[name]}",
            hint="run the same spec elsewhere: `fth estimate SPEC --all`, then "
            f"`fth submit --provider {{{'|'.join(sorted(BUILTIN)) or 'local'}}} SPEC`",
        )
    if found is None:
        raise _unknown(name)
    return found


def check_name(name: str) -> None:
    """Refuse a platform name that nothing knows (a typo), naming the closest; retired platforms pass. Entry
    points are read only for a name that is neither built in nor retired: reading them is slow."""
    if name not in BUILTIN and name not in RETIRED and name not in _entry_points():
        raise _unknown(name)


def _unknown(name: str) -> ConfigError:
    import difflib

    names = sorted(known())
    close = difflib.get_close_matches(name, names, n=1)
    return ConfigError(
        f"unknown provider '{name}'" + (f"; did you mean '{close[0]}'?" if close else ""),
        hint="known providers: " + ", ".join(names),
    )


def load(name: str) -> type[FineTuneJob]:
    """The adapter class for `name`; a missing SDK says which `pip install` fixes it."""
    entry = info(name)
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise
        extra = entry.extra or name
        raise MissingDependency(
            f"the {name} adapter needs the package '{exc.name}', which is not installed",
            hint=f"pip install 'finetune-hub[{extra}]'",
        ) from None
    return getattr(module, attr)  # type: ignore[no-any-return]
