"""What the validator reports: one `Finding` per problem, each with a rule id, file, line and a fix.

The rule catalog below is the single place a rule's severity and fix text live; docs/data.md lists it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from types import MappingProxyType

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Rule:
    severity: str
    summary: str
    fix: str


def _r(severity: str, summary: str, fix: str) -> Rule:
    return Rule(severity, summary, fix)


RULES: MappingProxyType[str, Rule] = MappingProxyType(
    {
        # the file and its encoding
        "file.not_found": _r(ERROR, "the file does not exist", "check the path (and data.train in the spec)"),
        "file.empty": _r(ERROR, "the file has no examples", "add examples; an empty file cannot train anything"),
        "file.unreadable": _r(
            ERROR, "the file cannot be read as the format it claims", "check the file is complete and not corrupt"
        ),
        "file.too_large": _r(ERROR, "the file is over the platform's size limit", "split it or remove examples"),
        "encoding.invalid_utf8": _r(ERROR, "bytes that are not UTF-8", "re-save the file as UTF-8"),
        "encoding.utf16": _r(ERROR, "the file is UTF-16", "re-save the file as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)"),
        "file.compressed": _r(ERROR, "the file is gzip-compressed", "decompress it first (gunzip -k FILE)"),
        "encoding.lone_surrogate": _r(
            ERROR,
            "a \\ud800-\\udfff escape without its pair: not Unicode text, and no UTF-8 file can hold it",
            "write the whole character (or its full surrogate pair, e.g. \\ud83d\\ude00), or remove the escape",
        ),
        "encoding.bom": _r(
            WARNING, "the file starts with a UTF-8 byte-order mark", "fth convert writes files without it"
        ),
        "encoding.bom_inside": _r(
            WARNING,
            "a UTF-8 byte-order mark starts a line inside the file (files joined with cat?)",
            "fth convert removes it; JSON readers refuse it",
        ),
        "jsonl.blank_line": _r(WARNING, "a blank line", "delete the blank line (fth convert drops it)"),
        "json.invalid": _r(ERROR, "not valid JSON", "fix the JSON on this line (often a truncated or unquoted value)"),
        "format.unknown": _r(
            ERROR,
            "the record matches no known format",
            "use OpenAI chat ({'messages': [...]}) or another format docs/data.md lists, or map columns with --columns",
        ),
        "format.mixed": _r(
            ERROR, "this record is in a different format than the rest of the file", "convert all lines to one format"
        ),
        "format.field_dropped": _r(
            INFO,
            "a source field that OpenAI chat JSONL has no place for",
            "fine if it only held metadata; fth convert drops it and names it in its report",
        ),
        "format.column_missing": _r(
            ERROR, "a mapped column is missing", "check --columns (e.g. --columns prompt=question,completion=answer)"
        ),
        # the seven OpenAI cookbook error kinds (same keys as the cookbook's counters)
        "data_type": _r(ERROR, "the example is not a JSON object", "each line must be one JSON object"),
        "missing_messages_list": _r(
            ERROR, "'messages' is missing, empty or not a list", "give each example a non-empty 'messages' list"
        ),
        "message_missing_key": _r(
            ERROR, "a message lacks 'role' or 'content'", "give every message a 'role' and a 'content'"
        ),
        "message_unrecognized_key": _r(
            ERROR,
            "a message has a key the platform does not accept",
            "keep to role, content, name, weight, tool_calls, tool_call_id (function_call is legacy)",
        ),
        "unrecognized_role": _r(
            ERROR, "a role other than system, user, assistant, tool", "use system, user, assistant or tool"
        ),
        "missing_content": _r(
            ERROR,
            "a message's content is missing, empty or not text",
            "put the text in 'content' (a string, or a list of text/image parts for user turns)",
        ),
        "example_missing_assistant_message": _r(
            ERROR, "the example has no assistant turn", "add the assistant reply the model should learn"
        ),
        # cookbook warnings
        "example_missing_system_message": _r(
            INFO, "examples without a system message", "optional; add one if inference will use a system prompt"
        ),
        "example_missing_user_message": _r(WARNING, "an example without a user message", "add the user's turn"),
        # beyond the cookbook
        "message_type": _r(ERROR, "a message is not a JSON object", "each message must be an object with role/content"),
        "blank_content": _r(WARNING, "content is only whitespace", "put real text there or remove the message"),
        "name_type": _r(ERROR, "'name' is not a string", "make 'name' a string or drop it"),
        "weight_value": _r(ERROR, "'weight' is not 0 or 1", "use weight 0 (do not train this turn) or 1 (train it)"),
        "weight_role": _r(ERROR, "'weight' on a non-assistant message", "weight is only allowed on assistant turns"),
        "no_trained_turn": _r(
            WARNING, "every assistant turn has weight 0", "set weight 1 on at least one assistant turn"
        ),
        "tools_type": _r(
            ERROR, "'tools' is not a list of function definitions", "use [{'type': 'function', 'function': {...}}]"
        ),
        "parallel_tool_calls_type": _r(ERROR, "'parallel_tool_calls' is not true/false", "use true or false"),
        "tool_call_malformed": _r(
            ERROR,
            "a tool call lacks id, type 'function', function.name or string arguments",
            "use {'id': ..., 'type': 'function', 'function': {'name': ..., 'arguments': '<JSON string>'}}",
        ),
        "tool_call_arguments_json": _r(
            ERROR, "tool call arguments are not a JSON object string", "arguments must be a JSON-encoded object"
        ),
        "tool_call_duplicate_id": _r(ERROR, "two tool calls share an id", "give each tool call a unique id"),
        "tool_call_unanswered": _r(
            ERROR, "a tool call has no tool message answering it", "add {'role': 'tool', 'tool_call_id': ...}"
        ),
        "tool_response_orphan": _r(
            ERROR,
            "a tool message answers no earlier tool call",
            "set tool_call_id to the id of a call made in an earlier assistant turn",
        ),
        "tool_undeclared": _r(
            WARNING, "a tool call names a function missing from 'tools'", "declare the function in 'tools'"
        ),
        "duplicate_example": _r(WARNING, "the same example appears twice", "remove the repeated example"),
        "train_validation_overlap": _r(
            ERROR, "a validation example also appears in the training file", "remove it from one of the two files"
        ),
        "tokens.template_error": _r(
            ERROR,
            "the model's chat template cannot render this example (training it would fail the same way)",
            "reshape the example as the template's message says (e.g. alternate user and assistant turns, or fold "
            "the system text into the first user turn), or train a model whose template accepts it",
        ),
        "too_many_tokens": _r(
            WARNING, "the example is over the model's token limit", "shorten it; the platform truncates it"
        ),
        # preference pairs (DPO)
        "dpo.malformed": _r(
            ERROR,
            "a preference pair lacks input.messages, preferred_output or non_preferred_output",
            "use {'input': {'messages': [...]}, 'preferred_output': [...], 'non_preferred_output': [...]}",
        ),
        "dpo.identical": _r(WARNING, "preferred and rejected outputs are identical", "make the two outputs differ"),
        # platform rule packs
        "platform.min_examples": _r(ERROR, "fewer examples than the platform requires", "add examples"),
        "platform.max_examples": _r(ERROR, "more examples than the platform accepts", "remove or split examples"),
        "platform.recommended_examples": _r(WARNING, "fewer examples than the platform recommends", "add examples"),
        "platform.unsupported_format": _r(
            ERROR, "the platform cannot train on this kind of example", "use another platform or method"
        ),
        "vertex.system_not_first": _r(
            ERROR,
            "a system message after the first turn (Vertex has one systemInstruction)",
            "move the system text to the first message, or make it a user turn",
        ),
        "vertex.preference_last_turn": _r(
            ERROR,
            "the prompt of a preference pair does not end with a user turn (Vertex requires it)",
            "end input.messages with the user message that both outputs answer",
        ),
        "vertex.preference_output": _r(
            ERROR,
            "an output is not one assistant message with text (a Vertex completion is a single text model turn)",
            "give preferred_output and non_preferred_output one assistant message each, text only (no tool calls)",
        ),
        "vertex.preference_text_only": _r(
            ERROR,
            "a non-text part in a preference pair (Vertex preference data is text only)",
            "remove the image parts from the pair, or tune it on another platform",
        ),
        "vertex.preference_completions": _r(
            ERROR,
            "'completions' is not one completion scored 1 and one scored 0, each a text model turn",
            "use [{'score': 1, 'completion': {'role': 'model', 'parts': [{'text': ...}]}}, {'score': 0, ...}]",
        ),
        "vertex.part_malformed": _r(
            ERROR,
            "a Vertex part is not one text, fileData, functionCall or functionResponse its turn can hold",
            "write parts as {'text': ...}, {'fileData': {'mimeType': ..., 'fileUri': 'gs://...'}} (user turns), "
            "{'functionCall': {'name': ..., 'args': {...}}} (model turns) or "
            "{'functionResponse': {'name': ..., 'response': {...}}} (a user turn of its own)",
        ),
        "platform.feature_dropped": _r(
            WARNING, "the platform cannot express a field of this example", "see `fth convert` for what changes"
        ),
        "vertex.image_not_gcs": _r(
            ERROR, "an image that is not a gs:// URI", "upload images to Cloud Storage and use gs:// URIs"
        ),
        "openai.image_url": _r(
            ERROR,
            "an image URL OpenAI cannot fetch (it reads http(s):// and data: URLs only, not gs:// or file paths)",
            "host the image at an https:// URL, or embed it as data:image/png;base64,...",
        ),
        "openai.image_role": _r(
            ERROR,
            "an image in a system or assistant turn (OpenAI and Azure take images in user turns only)",
            "move the image into a user message",
        ),
        "azure.bom_missing": _r(
            INFO, "Azure requires a UTF-8 BOM, which this file lacks", "fth convert --to azure_openai adds it"
        ),
        "azure.suffix": _r(ERROR, "the model suffix breaks Azure's rules", "use ≤ 18 characters and no '.'"),
    }
)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    file: str
    line: int | None  # 1-based line (JSONL, CSV) or row (Parquet, datasets); None for file-wide findings
    message: str
    fix: str

    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        return f"{self.location()}: {self.severity} [{self.rule}] {self.message} (fix: {self.fix})"


def finding(rule: str, file: str, line: int | None, message: str | None = None) -> Finding:
    spec = RULES[rule]
    return Finding(rule, spec.severity, file, line, message or spec.summary, spec.fix)


@dataclass
class Findings:
    """Collects findings with bounded memory: every occurrence is counted, the first `keep` per rule kept."""

    keep: int = 20
    kept: list[Finding] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    severity_counts: Counter[str] = field(default_factory=Counter)

    def add(self, item: Finding) -> None:
        self.counts[item.rule] += 1
        self.severity_counts[item.severity] += 1
        if self.counts[item.rule] <= self.keep:
            self.kept.append(item)

    def wants(self, rule: str) -> bool:
        """Whether another finding of `rule` would be kept (callers can skip building messages otherwise)."""
        return self.counts[rule] < self.keep

    def add_uncounted(self, rule: str, n: int) -> None:
        """Count `n` occurrences of `rule` without keeping them (beyond what `keep` shows anyway)."""
        self.counts[rule] += n
        self.severity_counts[RULES[rule].severity] += n

    def extend(self, other: Findings, line_offset: int = 0) -> None:
        """Merge findings from another part of the file whose lines start after `line_offset` lines."""
        for item in other.kept:
            self.add(replace(item, line=item.line + line_offset) if item.line is not None else item)
        for rule, n in other.counts.items():  # occurrences beyond what `other` kept
            self.add_uncounted(rule, n - min(n, other.keep))

    @property
    def errors(self) -> int:
        return self.severity_counts["error"]

    @property
    def warnings(self) -> int:
        return self.severity_counts["warning"]

    def sorted(self) -> list[Finding]:
        return sorted(self.kept, key=lambda f: (f.file, f.line or 0, f.rule))


class RecordError(Exception):
    """One record cannot be read or converted; becomes a Finding with the record's line."""

    def __init__(self, rule: str, message: str | None = None) -> None:
        super().__init__(message or RULES[rule].summary)
        self.rule = rule
        self.message = message or RULES[rule].summary
