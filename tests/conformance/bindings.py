"""Provider name → emulator binding. Every provider in the registry must have one."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from tests.conformance.binding import Binding

# name → "module:Class"; one line per adapter, beside its registry entry.
BINDINGS: dict[str, str] = {
    "vertex": "tests.conformance.bind_vertex:VertexBinding",
    "openai": "tests.conformance.bind_openai:OpenAIBinding",
    "azure_openai": "tests.conformance.bind_openai:AzureOpenAIBinding",
    "sagemaker": "tests.conformance.bind_sagemaker:SageMakerBinding",
    "local": "tests.conformance.bind_local:LocalBinding",
}


def binding_for(provider: str) -> Callable[[], Binding] | None:
    target = BINDINGS.get(provider)
    if target is None:
        return None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]
