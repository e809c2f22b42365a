"""Exporters: canonical records to what each platform reads, with every change named.

OpenAI, Azure OpenAI, SageMaker (our own trainer) and local read the canonical OpenAI chat JSONL as is; Azure
wants the file to start with a UTF-8 BOM. Vertex and Gradient get their own record shapes (Vertex two: supervised
examples and preference pairs).
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

from finetune_hub.data import gradient_format, vertex_format, vertex_preference
from finetune_hub.data.findings import RecordError
from finetune_hub.data.importers import identity, kind_of

Record = dict[str, Any]
Exporter = Callable[[Record], tuple[Record, list[str]]]

TARGETS = ("openai", "azure_openai", "vertex", "sagemaker", "gradient", "local")
#: the kinds of canonical record each target can train on
ACCEPTS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        "openai": frozenset({"chat", "preference"}),
        "azure_openai": frozenset({"chat", "preference"}),
        "vertex": frozenset({"chat", "preference"}),
        "gradient": frozenset({"chat"}),
        "sagemaker": frozenset({"chat", "preference", "text"}),
        "local": frozenset({"chat", "preference", "text"}),
    }
)
#: file-level prefix each target needs
FILE_PREFIX: MappingProxyType[str, bytes] = MappingProxyType({"azure_openai": b"\xef\xbb\xbf"})

#: change key → what the conversion report says about it ("key:detail" fills the description's {})
CHANGES: MappingProxyType[str, str] = MappingProxyType(
    {
        "vertex.role_renamed": "role 'assistant' renamed to 'model'",
        "vertex.system_instruction": "leading system messages moved to 'systemInstruction'",
        "vertex.system_moved": "system message after the first turn sent as a user turn (meaning may change)",
        "vertex.weight_dropped": "'weight' dropped (Vertex trains every model turn, including weight-0 ones)",
        "vertex.name_dropped": "message 'name' dropped (Vertex has no participant names)",
        "vertex.tool_call_ids": "tool call ids dropped (Vertex pairs functionResponse with functionCall by name)",
        "vertex.schema_types": "tool parameter schema types upper-cased (string → STRING)",
        "vertex.legacy_functions": "legacy 'function_call' and 'function' messages written as functionCall and "
        "functionResponse parts (they read back as tool_calls)",
        "vertex.parallel_tool_calls_dropped": "'parallel_tool_calls' dropped (no Vertex equivalent)",
        "vertex.image_dropped": "image part dropped: not a gs:// URI",
        "vertex.part_dropped": "content part of an unknown type dropped",
        "vertex.non_user_image_dropped": "image part of a system or assistant turn dropped "
        "(Vertex takes images in user turns only)",
        "vertex.fields_dropped": "fields besides 'messages', 'tools' and 'parallel_tool_calls' dropped "
        "(e.g. metadata; `fth validate --for vertex` names them)",
        "vertex.preference_system_instruction": "leading system messages moved to 'system_instruction'",
        "vertex.preference_tools_dropped": "tool calls, tool turns and 'tools' of the prompt dropped "
        "(Vertex preference data is text only)",
        "vertex.preference_part_dropped": "non-text content part dropped (Vertex preference data is text only)",
        "vertex.preference_fields_dropped": "fields besides the prompt and the two outputs dropped "
        "(e.g. metadata; `fth validate --for vertex` names them)",
        "gradient.tools_dropped": "tool calls, tool turns and 'tools' dropped (Gradient has no tool calling)",
        "gradient.name_dropped": "message 'name' dropped",
        "gradient.parts_flattened": "content parts flattened to their text (images dropped)",
        "azure.bom_added": "UTF-8 byte-order mark added at the start of the file (Azure requires it)",
        "source.bom_removed": "UTF-8 byte-order mark of the source removed",
        "source.blank_lines_removed": "blank lines removed",
        "source.inner_boms_removed": "byte-order marks inside the file (files joined with cat) removed",
        "source.imported": "records rewritten from the source format into OpenAI chat JSONL",
        "source.field_dropped": "source field '{}' dropped (nothing in OpenAI chat JSONL holds it)",
        "source.tool_call_ids_generated": "tool call ids generated (call_1, call_2, ...; the source pairs calls "
        "and answers by name)",
    }
)


def _vertex(record: Record) -> tuple[Record, list[str]]:
    if kind_of(record) == "preference":
        return vertex_preference.to_vertex_preference(record)
    return vertex_format.to_vertex(record)


def exporter_for(target: str) -> Exporter:
    if target not in TARGETS:
        raise RecordError("platform.unsupported_format", f"unknown target {target!r}; use one of {', '.join(TARGETS)}")
    if target == "vertex":
        return _vertex
    if target == "gradient":
        return gradient_format.to_gradient
    return identity


def is_passthrough(target: str) -> bool:
    """True when the target reads canonical records unchanged (so source lines can be copied byte for byte)."""
    return exporter_for(target) is identity
