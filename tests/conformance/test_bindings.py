from finetune_hub import registry
from tests.conformance.bindings import BINDINGS


def test_every_registered_provider_has_an_emulator_binding() -> None:
    missing = sorted(set(registry.BUILTIN) - set(BINDINGS))
    assert missing == [], f"providers without an emulator binding: {missing}"
