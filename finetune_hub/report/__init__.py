"""Reports of a `Comparison`: a rich table (`table.show`), and files in HTML, Markdown or JSON chosen by
the path's suffix (`write`)."""

from __future__ import annotations

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


def format_of(path: Path) -> str | None:
    """The report format `path` asks for ("HTML", "Markdown", "JSON"), None for an existing folder (all three);
    checked before any work so a wrong suffix costs nothing."""
    if path.is_dir():
        return None
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: cannot tell the report format from the suffix '{path.suffix}'",
            hint="use .html, .md or .json, or an existing folder for all three",
        )
    return fmt


def write(comparison: Comparison, path: Path) -> Path:
    """Write the report in the format the suffix names (.html, .md, .json); a folder gets all three."""
    fmt = format_of(path)
    if fmt is None:
        for suffix in (".html", ".md", ".json"):
            write(comparison, path / f"comparison{suffix}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(comparison, fmt), encoding="utf-8")
    tmp.replace(path)  # never leave a half-written report behind
    return path
