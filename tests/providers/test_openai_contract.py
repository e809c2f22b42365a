"""Contract: every request the OpenAI and Azure adapters send is valid under OpenAI's own OpenAPI document
(shared/specs/openai/openapi.yaml): the operation exists, query parameters are declared and well typed,
JSON and multipart bodies match their schemas. Skipped when the document is absent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from finetune_hub import api
from finetune_hub.records import JobStatus
from finetune_hub.store import JobStore
from tests.conformance.bind_openai import AzureOpenAIBinding, OpenAIBinding
from tests.conftest import SHARED, write_chat_jsonl, write_dpo_jsonl
from tests.emulators.harness import Request
from tests.emulators.openai_server import multipart

DOCUMENT = SHARED / "specs" / "openai" / "openapi.yaml"
URI = "urn:openai:openapi"
#: what sits in front of the documented paths: OpenAI's /v1, Azure's /openai/v1 and its dated /openai
PREFIX = re.compile(r"^/(?:openai/)?(?:v1/)?")
#: query parameters that belong to the Azure wire style, not to the OpenAI document
AZURE_QUERY = {"api-version"}


def as_json_schema_2020(node: Any) -> Any:
    """The document is OpenAPI 3.1 but keeps a few 3.0 habits: boolean `exclusiveMinimum`/`exclusiveMaximum`
    beside `minimum`/`maximum` (7 places) and `nullable` (100+). Rewrite them the JSON Schema 2020-12 way."""
    if isinstance(node, list):
        return [as_json_schema_2020(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: as_json_schema_2020(value) for key, value in node.items()}
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), bool):
            exclusive = node.pop(bound)
            if exclusive and limit in node:
                node[bound] = node.pop(limit)
    if node.pop("nullable", False) is True and isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    return node


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """The OpenAPI document, indexed by operation, with JSON Schema validation that resolves its $refs."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.registry: Registry[Any] = Registry().with_resource(
            URI, Resource.from_contents(document, default_specification=DRAFT202012)
        )
        self.operations = []
        for path, item in document["paths"].items():
            regex = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path.lstrip("/"))) + "$")
            for method, operation in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    self.operations.append((method.upper(), regex, path, operation))

    def _errors(self, pointer: str, value: Any) -> list[str]:
        validator = Draft202012Validator({"$ref": URI + pointer}, registry=self.registry)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(value)]

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def check(self, request: Request) -> tuple[str | None, list[str]]:
        """(the operation's path, what is wrong with the request)."""
        path = PREFIX.sub("", request.path)
        found = next(((p, op) for m, rx, p, op in self.operations if m == request.method and rx.match(path)), None)
        if found is None:
            return None, [f"{request.method} {request.path}: no such operation"]
        template, operation = found
        problems = self._query(template, operation, request)
        body = operation.get("requestBody")
        if body is not None:
            content_type = {k.lower(): v for k, v in request.headers.items()}.get("content-type", "")
            media = content_type.split(";")[0].strip()
            if media not in body["content"]:
                return template, [*problems, f"body sent as {media!r}, documented as {list(body['content'])}"]
            if media == "application/json":
                value: Any = json.loads(request.body)
            else:  # multipart: files stand in as strings (format: binary)
                value = {k: "<binary>" if name else data.decode() for k, (name, data) in multipart(request).items()}
            problems += self._errors(
                _pointer("paths", template, request.method.lower(), "requestBody", "content", media, "schema"), value
            )
        return template, problems

    def _query(self, template: str, operation: dict[str, Any], request: Request) -> list[str]:
        declared = {}
        for i, parameter in enumerate(operation.get("parameters", [])):
            resolved = self._resolve(parameter)
            if resolved["in"] == "query":
                declared[resolved["name"]] = (i, resolved)
        given: dict[str, Any] = {}
        for key, values in request.query.items():
            name, _, inner = key.partition("[")
            if inner:  # deepObject, e.g. metadata[fth_key]=...
                given.setdefault(name, {})[inner.rstrip("]")] = values[0]
            else:
                given[name] = values[0]
        problems = []
        for name, value in given.items():
            if name in AZURE_QUERY:
                continue
            if name not in declared:
                problems.append(f"query parameter {name!r} is not documented")
                continue
            i, parameter = declared[name]
            if parameter.get("schema", {}).get("type") == "integer" and isinstance(value, str):
                value = int(value) if value.isdigit() else value
            where = _pointer("paths", template, request.method.lower(), "parameters", str(i), "schema")
            problems += [f"query {name}: {p}" for p in self._errors(where, value)]
        return problems


@pytest.fixture(scope="session")
def contract() -> Contract:
    if not DOCUMENT.is_file():
        pytest.skip(f"{DOCUMENT} is not present")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the 3 MB document: ~1 s with libyaml
    return Contract(as_json_schema_2020(yaml.load(DOCUMENT.read_text(encoding="utf-8"), Loader=loader)))


@pytest.fixture(params=[OpenAIBinding, AzureOpenAIBinding], ids=["openai", "azure_openai"])
def bound(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIBinding]:
    binding = request.param()
    binding.start(tmp_path, monkeypatch)
    yield binding
    binding.stop()


def exercise(bound: OpenAIBinding, tmp_path: Path) -> None:
    """Every call the adapter makes: uploads (plain and in parts), create, list, pause/resume, events,
    checkpoints, results, cancel, chat."""
    store = JobStore(tmp_path / "jobs.db")
    train = write_dpo_jsonl(tmp_path / "train.jsonl", 12)
    spec = bound.spec(train, write_dpo_jsonl(tmp_path / "valid.jsonl", 10, start=30))
    spec = spec.model_copy(
        update={"method": "dpo", "hyperparameters": spec.hyperparameters.model_copy(update={"beta": 0.1})}
    )
    job = api.submit(spec, bound.provider, store=store)
    bound.advance(job.remote_id, "running")
    job.pause()
    job.resume()
    bound.advance(job.remote_id, "succeeded")
    assert job.wait(sleep=lambda _: None).status is JobStatus.SUCCEEDED
    job.checkpoints()
    model = bound.served(job.result().model or "")
    job.predict(model, [{"role": "user", "content": "Capital of country number 1?"}])

    other = api.make_job(bound.provider, bound.spec(write_chat_jsonl(tmp_path / "big.jsonl", 40), None), store=store)
    other.large_file_bytes = 1024  # type: ignore[attr-defined]
    other.record = store.get(
        store.create_job(provider=bound.provider, name="o", spec={}, spec_hash="s", data_hash="d").id
    )
    store.update(other.record.id, remote_id=other.submit(other.prepare(), other.record.idempotency_key))
    other.record = store.get(other.record.id)
    other.cancel()


def test_every_request_matches_the_openapi_document(contract: Contract, bound: OpenAIBinding, tmp_path: Path) -> None:
    exercise(bound, tmp_path)
    covered, problems = set(), []
    for request in bound.emulator.requests:
        operation, found = contract.check(request)
        covered.add(f"{request.method} {operation}")
        problems += [f"{request.method} {request.path}: {p}" for p in found]
    assert problems == []
    assert {
        "POST /files",
        "POST /uploads",
        "POST /uploads/{upload_id}/parts",
        "POST /uploads/{upload_id}/complete",
        "POST /fine_tuning/jobs",
        "GET /fine_tuning/jobs",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/pause",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/resume",
        "POST /fine_tuning/jobs/{fine_tuning_job_id}/cancel",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/events",
        "GET /fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
        "GET /files/{file_id}/content",
        "POST /chat/completions",
    } <= covered


def test_the_contract_catches_what_the_document_forbids(contract: Contract) -> None:
    """The check above can fail: requests the document rejects are reported."""
    body = {
        "model": "gpt-4o-mini",
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
    }
    create = Request(
        "POST", "/v1/fine_tuning/jobs", {}, {"Content-Type": "application/json"}, json.dumps(body).encode()
    )
    assert {p.split(":")[0] for p in contract.check(create)[1]} == {
        "(body)",
        "method/supervised/hyperparameters/n_epochs",
    }
    listing = Request("GET", "/v1/fine_tuning/jobs", {"limit": ["many"], "colour": ["red"]}, {}, b"")
    assert len(contract.check(listing)[1]) == 2
    assert contract.check(Request("DELETE", "/v1/fine_tuning/jobs", {}, {}, b""))[0] is None
