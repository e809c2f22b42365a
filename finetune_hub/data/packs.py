"""Platform rule packs: what each target accepts beyond the OpenAI chat format itself.

Numbers come from shared notes providers.md / data-formats.md, each with its source label.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from finetune_hub.data import vertex_format, vertex_preference
from finetune_hub.data.exporters import ACCEPTS

Problem = tuple[str, str]
_MB = 1 << 20


@dataclass(frozen=True)
class Pack:
    min_examples: int = 1
    recommended_examples: int | None = None
    max_examples: int | None = None
    max_validation_examples: int | None = None
    max_file_bytes: int | None = None
    note: str = ""


PACKS: MappingProxyType[str, Pack] = MappingProxyType(
    {
        "openai": Pack(min_examples=10, max_file_bytes=512 * _MB, note="[D] SFT guide: ≥10 examples; 512 MB files"),
        "azure_openai": Pack(min_examples=10, max_file_bytes=512 * _MB, note="[D] Azure docs: ≥10; 512 MB; BOM"),
        "vertex": Pack(
            recommended_examples=100,
            max_examples=1_000_000,
            max_validation_examples=5_000,
            max_file_bytes=1024 * _MB,
            note="[D] Vertex: start with 100 (older docs: ≥16); ≤1M training, ≤5,000 validation; 1 GB",
        ),
        "sagemaker": Pack(),
        "gradient": Pack(),
        "local": Pack(),
    }
)


def normalize(target: str) -> str:
    return "azure_openai" if target == "azure" else target


def record_checks(target: str, record: dict[str, Any], kind: str) -> list[Problem]:
    """Per-example rules of one platform (the format-wide rules are in rules.py)."""
    if kind not in ACCEPTS[target]:
        return [("platform.unsupported_format", f"{target} cannot train on {kind} examples")]
    if target == "vertex":
        return vertex_preference.check(record) if kind == "preference" else _vertex(record)
    if target == "gradient" and (record.get("tools") or any(m.get("tool_calls") for m in _messages(record))):
        return [("platform.feature_dropped", "Gradient has no tool calling; tool turns are dropped")]
    if target in ("openai", "azure_openai"):
        return _openai_images(record, kind)
    return []


def _openai_images(record: dict[str, Any], kind: str) -> list[Problem]:
    """Image URLs OpenAI cannot fetch (gs://, s3://, file paths): it reads http(s) and data: URLs only; and
    images outside user turns, which OpenAI and Azure refuse."""
    problems: list[Problem] = []
    if kind == "chat":
        lists = [("messages", record.get("messages"))]
    else:
        prompt = record.get("input")
        lists = [("input.messages", prompt.get("messages") if isinstance(prompt, dict) else None)]
        lists += [(key, record.get(key)) for key in ("preferred_output", "non_preferred_output")]
    for where, messages in lists:
        for i, m in enumerate(messages if isinstance(messages, list) else ()):
            for j, url in _image_urls(m):  # (a missing url: rules.py says so)
                if isinstance(url, str) and not url.startswith(("https://", "http://", "data:")):
                    problems.append(("openai.image_url", f"{where}[{i}].content[{j}] is {url[:60]!r}"))
                if m.get("role") != "user":
                    problems.append(("openai.image_role", f"{where}[{i}].content[{j}] is in a {m.get('role')} turn"))
    return problems


def _image_urls(message: Any) -> Iterator[tuple[int, Any]]:
    """(part index, url) of each image_url part of a chat message's content; the url as given, None if none."""
    content = message.get("content") if isinstance(message, dict) else None
    for j, part in enumerate(content if isinstance(content, list) else ()):
        if isinstance(part, dict) and part.get("type") == "image_url":
            image = part.get("image_url")
            yield j, image.get("url") if isinstance(image, dict) else None


def _messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    messages = record.get("messages")
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _vertex(record: dict[str, Any]) -> list[Problem]:
    problems: list[Problem] = []
    images: set[str] = set()  # images Vertex has no place for, by where they are
    messages = _messages(record)
    leading = next((i for i, m in enumerate(messages) if m.get("role") != "system"), len(messages))
    for i, m in enumerate(messages):
        if i >= leading and m.get("role") == "system":
            problems.append(("vertex.system_not_first", f"messages[{i}] is a system message after the first turn"))
        for j, url in _image_urls(m):
            if not str(url or "").startswith("gs://"):
                problems.append(("vertex.image_not_gcs", f"messages[{i}].content[{j}] is {str(url or '')[:40]!r}"))
            elif m.get("role") != "user":
                images.add(f"images of {m.get('role')} turns")
    dropped = vertex_format.warned_losses(messages)
    dropped += sorted(images)
    if "parallel_tool_calls" in record:
        dropped.append("parallel_tool_calls")
    dropped += sorted(str(key) for key in record if key not in vertex_format.CHAT_FIELDS)
    if dropped:
        problems.append(("platform.feature_dropped", f"Vertex drops {', '.join(dropped)}"))
    return problems


def file_checks(
    target: str, *, examples: int, size: int, has_bom: bool, validation: bool, suffix: str | None = None
) -> list[Problem]:
    """Whole-file rules: example counts, file size, Azure's BOM and model-suffix rules."""
    pack = PACKS[target]
    has = f"this file has {examples:,}"
    problems: list[Problem] = []
    if validation and pack.max_validation_examples and examples > pack.max_validation_examples:
        limit = f"{target} takes ≤ {pack.max_validation_examples:,} validation examples"
        problems.append(("platform.max_examples", f"{limit}; {has}"))
    if not validation and 0 < examples < pack.min_examples:
        problems.append(("platform.min_examples", f"{target} needs ≥ {pack.min_examples} examples; {has}"))
    elif not validation and pack.recommended_examples and 0 < examples < pack.recommended_examples:
        problems.append(("platform.recommended_examples", f"{target} recommends ≥ {pack.recommended_examples}; {has}"))
    if not validation and pack.max_examples and examples > pack.max_examples:
        problems.append(("platform.max_examples", f"{target} takes ≤ {pack.max_examples:,} examples; {has}"))
    if pack.max_file_bytes and size > pack.max_file_bytes:
        limit = f"{target}'s {pack.max_file_bytes // _MB:,} MB limit"
        problems.append(("file.too_large", f"{size / _MB:,.0f} MB is over {limit}"))
    if target == "azure_openai" and not has_bom:
        problems.append(("azure.bom_missing", "the file has no UTF-8 BOM; the converted upload will"))
    if target == "azure_openai" and suffix is not None and (len(suffix) > 18 or "." in suffix):
        problems.append(("azure.suffix", f"suffix {suffix!r} must be ≤ 18 characters without '.'"))
    return problems


__all__ = ["PACKS", "Pack", "file_checks", "normalize", "record_checks"]
