"""Content hash of dataset files, the key for upload de-duplication."""

from __future__ import annotations

import hashlib
from pathlib import Path


def content_hash(*paths: Path | None) -> str:
    """SHA-256 over the files' bytes (streamed), in order; missing entries count as empty. A folder (a Hugging
    Face `datasets` directory) counts as its files, by relative path."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(b"\0file\0")
        if path is None:
            continue
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(path)).encode() + b"\0" if file != path else b"")
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
    return digest.hexdigest()
