"""`data.validation_split`: hold out a seeded share of the training examples, once, for every platform."""

from __future__ import annotations

import os
import random
from pathlib import Path

from finetune_hub.data.conversion import convert
from finetune_hub.data.hashing import content_hash
from finetune_hub.errors import DataError


def split_validation(source: Path, share: float, *, seed: int, out_dir: Path, fmt: str = "auto") -> tuple[Path, Path]:
    """(train, validation) files in OpenAI chat JSONL; the same inputs always give the same split.

    Streams: the source is converted to chat JSONL (which counts it), then written out in one pass.
    """
    folder = out_dir / f"{content_hash(source)[:16]}-{share:g}-{seed}"
    train, valid = folder / "train.jsonl", folder / "validation.jsonl"
    if train.is_file() and valid.is_file():
        return train, valid
    folder.mkdir(parents=True, exist_ok=True)
    canonical = folder / ".canonical.jsonl"
    # "local": the canonical JSONL with no platform's own rules (e.g. OpenAI's image URLs); each job checks its own
    count = convert(source, to="local", out=canonical, fmt=fmt).examples
    held = round(count * share)
    if not 0 < held < count:
        raise DataError(
            f"{source}: data.validation_split {share:g} of {count} examples leaves "
            f"{held} for validation and {count - held} for training",
            hint="use a larger file, another split fraction, or give data.validation",
        )
    chosen = set(random.Random(seed).sample(range(count), held))
    tmp_train, tmp_valid = train.with_suffix(".tmp"), valid.with_suffix(".tmp")
    with open(canonical, "rb") as src, open(tmp_train, "wb") as out_train, open(tmp_valid, "wb") as out_valid:
        for index, line in enumerate(line for line in src if line.strip()):
            (out_valid if index in chosen else out_train).write(line)
    os.replace(tmp_valid, valid)  # validation first: `train` existing means the pair is complete
    os.replace(tmp_train, train)
    canonical.unlink()
    return train, valid
