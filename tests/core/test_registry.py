from __future__ import annotations

import sys
from pathlib import Path

import pytest

from finetune_hub import registry
from finetune_hub.errors import ConfigError, MissingDependency, ProviderRetired


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        registry.load("no-such-platform")
    assert "unknown provider 'no-such-platform'" in exc.value.message
    assert exc.value.hint is not None and exc.value.hint.startswith("known providers:")
    for name in registry.BUILTIN:
        assert name in exc.value.hint


def test_missing_sdk_names_the_pip_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "adapter_needing_sdk.py").write_text("import an_sdk_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = registry.ProviderInfo("ghost", "adapter_needing_sdk:GhostJob", "ghost", "test")
    monkeypatch.setitem(registry.BUILTIN, "ghost", entry)
    with pytest.raises(MissingDependency) as exc:
        registry.load("ghost")
    assert "an_sdk_that_is_not_installed" in exc.value.message
    assert exc.value.hint == "pip install 'finetune-hub[ghost]'"


def test_a_broken_adapter_module_is_not_reported_as_a_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = registry.ProviderInfo("typo", "providers.no_such_module:Job", "x", "test")
    monkeypatch.setitem(registry.BUILTIN, "typo", entry)
    with pytest.raises(ModuleNotFoundError):
        registry.load("typo")


def test_third_party_adapters_come_from_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "acme_adapter.py").write_text("class AcmeJob:\n    provider = 'acme'\n")
    dist = tmp_path / "acme_fth-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-fth\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[finetune_hub.providers]\nacme = acme_adapter:AcmeJob\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "acme" in registry.known()
    assert registry.load("acme").__name__ == "AcmeJob"
    sys.modules.pop("acme_adapter", None)


def test_retired_platforms_say_where_to_go() -> None:
    with pytest.raises(ProviderRetired) as exc:
        registry.load("gradient")
    assert "retired" in exc.value.message and "2024" in exc.value.message
    assert exc.value.hint and "fth submit --provider" in exc.value.hint
