"""Billed training tokens, computed the way each platform bills them.

Adapters call `billed_tokens(stats, provider, model=..., epochs=...)` in their `estimate()` and multiply
`.billed` by the catalog price. Every rule here is written down in docs/data.md with its source.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from finetune_hub.data.dataset_stats import DatasetStats
from finetune_hub.pricing import base_model

# OpenAI's default-epoch rule, as the cookbook (examples/Chat_finetuning_data_prep.ipynb) states it:
# aim for 3 epochs, but keep epochs × examples between 100 and 25,000 (and epochs between 1 and 25).
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25

# Training tokens per example beyond which the platform truncates (and so stops billing).
# (provider, model prefix, cap, source label) — the longest matching prefix wins.
_EXAMPLE_CAPS: tuple[tuple[str, str, int, str], ...] = (
    ("openai", "gpt-4o", 65_536, "[B] Azure docs table, 65,536 training tokens per example for gpt-4o/-mini"),
    ("openai", "gpt-4.1", 65_536, "[B] assumed equal to gpt-4o's 65,536"),
    ("openai", "gpt-3.5-turbo", 16_385, "[B] gpt-3.5-turbo-0125 context"),
    ("openai", "", 65_536, "[B] assumed 65,536 (gpt-4o family) for an unlisted model"),
    ("vertex", "gemini", 131_072, "[D] Vertex limits page: 131,072 input+output tokens per example (2.5 Flash)"),
    ("vertex", "", 131_072, "[D] assumed 131,072 (Gemini 2.5 Flash's) for an unlisted model"),
)
_SAME_RULES_AS = {"azure_openai": "openai", "azure": "openai"}
#: platforms that bill per token; the others bill instance time, so tokens only predict run time
TOKEN_BILLED = frozenset({"openai", "azure_openai", "azure", "vertex"})


@dataclass(frozen=True)
class BilledTokens:
    provider: str
    model: str | None
    epochs: int
    epochs_auto: bool  # True when the platform picks epochs and we applied its rule
    per_epoch: int  # Σ min(cap, tokens of each example)
    billed: int  # per_epoch × epochs: what the platform charges for (or trains on)
    cap: int | None  # per-example token cap applied, if any
    capped_examples: int  # examples longer than the cap (truncated by the platform)
    exact: bool  # False when the token counts were approximate, or caps had to be estimated
    counter: str
    assumptions: list[str] = field(default_factory=list)


def openai_default_epochs(n_examples: int) -> int:
    """The epochs OpenAI (and Azure OpenAI) pick when `n_epochs` is "auto"."""
    if n_examples <= 0:
        return TARGET_EPOCHS
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def example_token_cap(provider: str, model: str | None) -> tuple[int | None, str | None]:
    """(tokens per example the platform trains on, where that number comes from); (None, None) if no cap."""
    rules = _SAME_RULES_AS.get(provider, provider)
    model = base_model(model or "")  # a fine-tune ("ft:gpt-4o-mini-...:org::id") is capped as its base
    best: tuple[int, int, str] | None = None
    for name, prefix, cap, source in _EXAMPLE_CAPS:
        if name == rules and model.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), cap, source)
    return (best[1], best[2]) if best else (None, None)


def billed_tokens(
    stats: DatasetStats,
    provider: str,
    *,
    model: str | None = None,
    epochs: int | None = None,
    max_tokens_per_example: int | None = None,
    time_billed: bool | None = None,
) -> BilledTokens:
    """Tokens the platform bills (OpenAI, Azure, Vertex) or trains on (SageMaker, local, Gradient).

    `epochs=None` means the platform's default: OpenAI's automatic rule for OpenAI/Azure. `max_tokens_per_example`
    overrides the platform's cap (for local/SageMaker pass the spec's `max_seq_length`: longer examples are cut).
    `time_billed` says how this job is billed where the platform does both (SageMaker serverless bills tokens).
    """
    model = model or stats.model
    rules = _SAME_RULES_AS.get(provider, provider)
    assumptions: list[str] = []
    if max_tokens_per_example is not None:
        cap: int | None = max_tokens_per_example
    else:
        cap, source = example_token_cap(provider, model)
        if source:
            assumptions.append(f"examples over {cap:,} tokens are truncated to {cap:,} ({source})")

    epochs_auto = epochs is None
    if epochs is None and rules == "openai":
        epochs = openai_default_epochs(stats.examples)
        assumptions.append(
            f"n_epochs=auto: {epochs} epochs for {stats.examples:,} examples (OpenAI's rule: 3, kept so that "
            f"epochs × examples stays within {MIN_TARGET_EXAMPLES}..{MAX_TARGET_EXAMPLES:,})"
        )
    elif epochs is None:
        epochs = TARGET_EPOCHS
        assumptions.append(f"epochs not set; {provider} picks its own default, the estimate assumes {epochs}")

    exact = stats.exact
    counts = stats.token_counts
    if cap is None:
        per_epoch, capped = stats.tokens, 0
    elif len(counts) == stats.examples:
        per_epoch = sum(min(cap, n) for n in counts)
        capped = sum(1 for n in counts if n > cap)
    else:  # only totals known: bound by the cap, and say the figure is an estimate
        per_epoch = min(stats.tokens, stats.examples * cap)
        capped = stats.examples if stats.max_tokens > cap else 0
        if stats.max_tokens > cap:
            exact = False
            assumptions.append("per-example token counts unavailable; capped total estimated from totals")
    if not stats.exact:
        assumptions.append(f"token counts are approximate: {stats.counter}")
    if time_billed is None:
        time_billed = provider not in TOKEN_BILLED
    if time_billed:
        assumptions.append(f"{provider} bills compute time, not tokens; these are the tokens it trains on")
    return BilledTokens(
        provider=provider,
        model=model,
        epochs=epochs,
        epochs_auto=epochs_auto,
        per_epoch=per_epoch,
        billed=per_epoch * epochs,
        cap=cap,
        capped_examples=capped,
        exact=exact,
        counter=stats.counter,
        assumptions=assumptions,
    )
