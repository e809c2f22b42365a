"""Datasets: canonical records, readers, validation, token counts and per-platform conversion.

The functions here are the stable entry points the rest of the package calls.
"""

from __future__ import annotations

from finetune_hub.data.core import (
    ConversionReport,
    DatasetStats,
    content_hash,
    convert,
    stats,
    validate_for,
)

__all__ = ["ConversionReport", "DatasetStats", "content_hash", "convert", "stats", "validate_for"]
