"""Content hash of dataset files, the key for upload de-duplication."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(*paths: Path | None) -> str:
    """SHA-256 over the files' bytes (streamed), in order; missing entries count as empty."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(b"\0file\0")
        if path is not None:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()
