"""Datasets: canonical records, readers, validation, token counts and per-platform conversion.

The functions here are the stable entry points the rest of the package calls; docs/data.md describes them.
"""

from __future__ import annotations

from finetune_hub.data.conversion import ConversionError, ConversionReport, convert
from finetune_hub.data.dataset_stats import DatasetStats, stats
from finetune_hub.data.examples import read_examples
from finetune_hub.data.findings import Finding
from finetune_hub.data.hashing import content_hash
from finetune_hub.data.split import split_validation
from finetune_hub.data.validation import ValidationReport, validate, validate_for

__all__ = [
    "ConversionError",
    "ConversionReport",
    "DatasetStats",
    "Finding",
    "ValidationReport",
    "content_hash",
    "convert",
    "read_examples",
    "split_validation",
    "stats",
    "validate",
    "validate_for",
]
