"""Billed tokens as each platform bills them: per-example caps, epochs, OpenAI's automatic epoch rule."""

from __future__ import annotations

from array import array

import pytest

from finetune_hub.data.billing import billed_tokens, example_token_cap, openai_default_epochs
from finetune_hub.data.dataset_stats import DatasetStats


def make_stats(counts: list[int], exact: bool = True) -> DatasetStats:
    return DatasetStats(len(counts), sum(counts), max(counts, default=0), exact, "test", array("I", counts))


@pytest.mark.parametrize(
    ("examples", "epochs"),
    [
        (1, 25),
        (5, 20),
        (10, 10),
        (33, 3),
        (34, 3),
        (100, 3),
        (8333, 3),
        (8334, 2),
        (12_500, 2),
        (25_001, 1),
        (10**6, 1),
    ],
)
def test_openai_automatic_epochs_follow_the_cookbook_rule(examples: int, epochs: int) -> None:
    assert openai_default_epochs(examples) == epochs


def test_openai_caps_each_example_and_multiplies_by_auto_epochs() -> None:
    counts = [100, 70_000, 200] * 4  # 12 examples → auto epochs 8; one in three over the 65,536 cap
    result = billed_tokens(make_stats(counts), "openai", model="gpt-4o-mini-2024-07-18")
    assert (result.epochs, result.epochs_auto, result.cap) == (8, True, 65_536)
    assert result.per_epoch == 4 * (100 + 65_536 + 200)
    assert result.billed == 8 * result.per_epoch
    assert result.capped_examples == 4
    assert any("n_epochs=auto" in a for a in result.assumptions)


def test_explicit_epochs_and_azure_uses_openai_rules() -> None:
    result = billed_tokens(make_stats([1000] * 50), "azure_openai", model="gpt-4.1-mini", epochs=2)
    assert (result.billed, result.epochs, result.epochs_auto) == (100_000, 2, False)


def test_vertex_cap_and_default_epochs_are_stated() -> None:
    result = billed_tokens(make_stats([200_000, 10]), "vertex", model="gemini-2.5-flash")
    assert result.cap == 131_072 and result.per_epoch == 131_072 + 10
    assert any("assumes 3" in a for a in result.assumptions)


def test_local_uses_max_seq_length_and_says_it_bills_time() -> None:
    result = billed_tokens(make_stats([5000, 100]), "local", max_tokens_per_example=2048, epochs=1)
    assert result.billed == 2148 and result.capped_examples == 1
    assert any("compute time" in a for a in result.assumptions)


def test_approximate_counts_and_missing_per_example_counts_are_flagged() -> None:
    approx = billed_tokens(make_stats([10, 20], exact=False), "openai")
    assert not approx.exact and any("approximate" in a for a in approx.assumptions)
    totals_only = DatasetStats(3, 300_000, 200_000, True, "test")
    result = billed_tokens(totals_only, "openai", model="gpt-4o", epochs=1)
    assert result.per_epoch == 3 * 65_536  # bounded by the cap, since per-example counts are unknown
    assert not result.exact


def test_caps_by_provider_and_model() -> None:
    assert example_token_cap("openai", "gpt-3.5-turbo-0125")[0] == 16_385
    assert example_token_cap("local", "anything") == (None, None)
