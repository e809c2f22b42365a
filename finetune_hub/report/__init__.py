"""Reports of a `Comparison`: a rich table (`table.show`), and files in HTML, Markdown or JSON chosen by
the path's suffix (`write`)."""

from __future__ import annotations

import os
from pathlib import Path

from finetune_hub.compare import Comparison
from finetune_hub.errors import ConfigError
from finetune_hub.records import to_json

FORMATS = {".html": "HTML", ".htm": "HTML", ".md": "Markdown", ".markdown": "Markdown", ".json": "JSON"}


def render(comparison: Comparison, fmt: str) -> str:
    """The report as text; `fmt` is "HTML", "Markdown" or "JSON"."""
    if fmt == "HTML":
        from finetune_hub.report import html

        return html.render(comparison)
    if fmt == "Markdown":
        from finetune_hub.report import markdown

        return markdown.render(comparison)
    if fmt == "JSON":
        return to_json(comparison) + "\n"
    raise ConfigError(f"unknown report format '{fmt}'", hint="formats: HTML, Markdown, JSON")


def format_of(path: Path | str) -> str | None:
    """The report format `path` asks for ("HTML", "Markdown", "JSON"), None for an existing folder (all three);
    checked before any work so a wrong suffix costs nothing."""
    path = Path(path)
    if path.is_dir():
        return None
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: cannot tell the report format from the suffix '{path.suffix}'",
            hint="use .html, .md or .json, or an existing folder for all three",
        )
    folder = next((p for p in path.parents if p.exists()), Path("."))  # the one to create it under
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"{path}: cannot write there ({folder} is not a writable folder)")
    return fmt


def write(comparison: Comparison, path: Path | str) -> Path:
    """Write the report in the format the suffix names (.html, .md, .json); a folder gets all three."""
    path = Path(path)
    fmt = format_of(path)
    if fmt is None:
        for suffix in (".html", ".md", ".json"):
            write(comparison, path / f"comparison{suffix}")
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(render(comparison, fmt), encoding="utf-8")
        tmp.replace(path)  # never leave a half-written report behind
    except OSError as exc:
        raise ConfigError(f"{path}: the report could not be written ({exc.strerror or exc})") from None
    return path
