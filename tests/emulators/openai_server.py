"""A stateful OpenAI-compatible fine-tuning server for tests, on the harness (127.0.0.1, clock, faults).

It speaks the wire protocol the `openai` SDK speaks: files (multipart), uploads (parts), fine-tuning jobs
with events, checkpoints, a results CSV, pause/resume, cancel, a metadata filter on list, and chat
completions that answer from the fine-tuned model's training data. The same routes are served under
OpenAI's `/v1`, Azure's `/openai/v1` and Azure's dated `/openai/...?api-version=` paths; Azure requests
also take `trainingType` and get Azure-style model names.

Jobs move on the emulator's clock (openai_jobs.py); `advance` moves the clock exactly as far as a test
needs, so tests never sleep.
"""

from __future__ import annotations

import itertools
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from tests.emulators.harness import Clock, Emulator, Request, Response
from tests.emulators.openai_jobs import TERMINAL, Job, Lifecycle

PREFIXES = {"/v1": "openai", "/openai/v1": "azure", "/openai": "azure-dated"}
TRAINING_TYPES = ("standard", "globalstandard", "developer", "developertier")
CREATE_FIELDS = {"model", "training_file", "validation_file", "hyperparameters", "method", "suffix", "seed"}
CREATE_FIELDS |= {"metadata", "integrations"}


def error(status: int, message: str, *, param: str | None = None, code: str | None = None) -> Response:
    """An OpenAI-shaped error body."""
    kind = {401: "invalid_request_error", 404: "invalid_request_error", 429: "requests"}.get(status)
    kind = kind or ("server_error" if status >= 500 else "invalid_request_error")
    return Response(status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


class Invalid(Exception):
    """A request the platform refuses: answered as an OpenAI error body with `status`."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param, self.status = param, status


class OpenAIEmulator(Emulator):
    processing_s = 0.0  # how long an uploaded file stays "pending" (Azure imports files before use)
    failing_imports = 0  # how many of the next uploads end their import in status "error" (Azure)

    def __init__(self, api_key: str | None = "sk-emulator", clock: Clock | None = None, seconds_per_request: float = 0):
        super().__init__(clock)
        self.api_key = api_key
        self.seconds_per_request = seconds_per_request  # lets a CLI in another process see a job progress
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self.parts: dict[str, bytes] = {}
        self.jobs: dict[str, Job] = {}
        self.deployments: dict[str, str] = {}  # Azure: deployment name → model; Azure answers only through these
        self.lifecycle = Lifecycle(self.clock, self._id, self._store_file)
        self._ids = itertools.count(1)
        for prefix in PREFIXES:
            for method, path, handler in self._table():
                self.route(method, prefix + path, handler)
        self.route("POST", "/openai/deployments/{deployment}/chat/completions", self.chat)  # the dated style

    def _table(self) -> list[tuple[str, str, Any]]:
        jobs = "/fine_tuning/jobs"
        return [
            ("POST", "/files", self.create_file),
            ("GET", "/files", self.list_files),
            ("GET", "/files/{file_id}", self.get_file),
            ("GET", "/files/{file_id}/content", self.file_content),
            ("DELETE", "/files/{file_id}", self.delete_file),
            ("POST", "/uploads", self.create_upload),
            ("POST", "/uploads/{upload_id}/parts", self.add_part),
            ("POST", "/uploads/{upload_id}/complete", self.complete_upload),
            ("POST", "/uploads/{upload_id}/cancel", self.cancel_upload),
            ("POST", jobs, self.create_job),
            ("GET", jobs, self.list_jobs),
            ("GET", jobs + "/{job_id}", self.get_job),
            ("POST", jobs + "/{job_id}/cancel", self.cancel_job),
            ("POST", jobs + "/{job_id}/pause", self.pause_job),
            ("POST", jobs + "/{job_id}/resume", self.resume_job),
            ("GET", jobs + "/{job_id}/events", self.list_events),
            ("GET", jobs + "/{job_id}/checkpoints", self.list_checkpoints),
            ("POST", "/chat/completions", self.chat),
        ]

    # -- plumbing ------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        self.clock.advance(self.seconds_per_request)
        headers = {k.lower(): v for k, v in request.headers.items()}
        given = headers.get("api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key is not None and given != self.api_key:
            return error(401, "Incorrect API key provided.", code="invalid_api_key")
        if _flavor(request.path) == "azure-dated" and not request.arg("api-version"):
            return error(404, "Resource not found: the dated Azure path needs ?api-version=", code="404")
        try:
            return super().dispatch(request)
        except Invalid as exc:
            return error(exc.status, str(exc), param=exc.param, code="not_found" if exc.status == 404 else None)

    def fault_response(self, fault: str) -> Response:
        response = error(int(fault), f"injected {fault}", code=fault)
        if fault == "429":
            response.headers["Retry-After"] = str(self.faults.retry_after)
        return response

    def _id(self, prefix: str, width: int = 24) -> str:
        return f"{prefix}{next(self._ids):0{width}x}"

    def now(self) -> int:
        return int(self.clock.now())

    @property
    def upload_count(self) -> int:
        """Files created for fine-tuning, by either upload route."""
        return sum(1 for f in self.files.values() if f["purpose"] == "fine-tune")

    # -- files and uploads ---------------------------------------------------------------------------

    def create_file(self, request: Request) -> Response:
        form = multipart(request)
        if "file" not in form or "purpose" not in form:
            raise Invalid("'file' and 'purpose' are required", "file")
        filename, data = form["file"]
        _check_purpose(form["purpose"][1].decode())
        return Response(200, self._store_file(filename or "upload", data, form["purpose"][1].decode()))

    def _store_file(self, filename: str, data: bytes, purpose: str) -> dict[str, Any]:
        if purpose == "fine-tune":
            _examples(data)  # rejects what is not JSONL
        file_id = self._id("file-")
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": self.now(),
            "filename": filename,
            "purpose": purpose,
            "status": "pending" if self.processing_s else "processed",
        }
        if self.failing_imports:
            self.failing_imports -= 1
            self.files[file_id] |= {"status": "error", "status_details": "the file could not be imported"}
        self.contents[file_id] = data
        return self.files[file_id]

    def _file(self, file_id: str | None, param: str = "file_id", status: int = 404) -> dict[str, Any]:
        if file_id not in self.files:
            raise Invalid(f"No such File object: {file_id}", param, status)
        found = self.files[file_id]
        if found["status"] == "pending" and found["created_at"] + self.processing_s <= self.clock.now():
            found["status"] = "processed"
        return found

    def list_files(self, request: Request) -> Response:
        return Response(200, {"object": "list", "data": list(self.files.values()), "has_more": False})

    def get_file(self, request: Request) -> Response:
        return Response(200, self._file(request.params["file_id"]))

    def file_content(self, request: Request) -> Response:
        self._file(request.params["file_id"])
        return Response(200, self.contents[request.params["file_id"]])

    def delete_file(self, request: Request) -> Response:
        self._file(request.params["file_id"])
        del self.files[request.params["file_id"]]
        return Response(200, {"id": request.params["file_id"], "object": "file", "deleted": True})

    def create_upload(self, request: Request) -> Response:
        body = request.json()
        _check_purpose(body["purpose"])
        upload_id = self._id("upload_")
        self.uploads[upload_id] = {
            "id": upload_id,
            "object": "upload",
            "bytes": body["bytes"],
            "created_at": self.now(),
            "expires_at": self.now() + 3600,
            "filename": body["filename"],
            "purpose": body["purpose"],
            "status": "pending",
            "file": None,
        }
        return Response(200, self.uploads[upload_id])

    def add_part(self, request: Request) -> Response:
        upload = self._upload(request)
        part_id = self._id("part_")
        self.parts[part_id] = multipart(request)["data"][1]
        return Response(
            200, {"id": part_id, "object": "upload.part", "created_at": self.now(), "upload_id": upload["id"]}
        )

    def complete_upload(self, request: Request) -> Response:
        upload = self._upload(request)
        data = b"".join(self.parts[p] for p in request.json()["part_ids"])
        if len(data) != upload["bytes"]:
            raise Invalid(f"the parts hold {len(data)} bytes, the upload was created for {upload['bytes']}", "bytes")
        upload.update(status="completed", file=self._store_file(upload["filename"], data, upload["purpose"]))
        return Response(200, upload)

    def cancel_upload(self, request: Request) -> Response:
        upload = self._upload(request)
        upload["status"] = "cancelled"
        return Response(200, upload)

    def _upload(self, request: Request) -> dict[str, Any]:
        upload = self.uploads.get(request.params["upload_id"])
        if upload is None:
            raise Invalid(f"No upload found with id '{request.params['upload_id']}'.", status=404)
        if upload["status"] != "pending":
            raise Invalid(f"upload {upload['id']} is already {upload['status']}")
        return upload

    # -- jobs ----------------------------------------------------------------------------------------

    def create_job(self, request: Request) -> Response:
        body = request.json() or {}
        flavor = _flavor(request.path)
        unknown = set(body) - CREATE_FIELDS - ({"trainingType"} if flavor != "openai" else set())
        if unknown:
            raise Invalid(f"Unrecognized request argument supplied: {', '.join(sorted(unknown))}", sorted(unknown)[0])
        if not isinstance(body.get("model"), str) or not body["model"]:
            raise Invalid("'model' is required", "model")
        train = self._file(body.get("training_file"), "training_file", 400)
        if train["purpose"] != "fine-tune":
            raise Invalid(f"File {train['id']} has purpose '{train['purpose']}', not 'fine-tune'", "training_file")
        for role in ("training_file", "validation_file"):
            if body.get(role) is not None and self._file(body[role], role, 400)["status"] != "processed":
                raise Invalid(f"File {body[role]} is still being processed; retry when it is 'processed'", role)
        method = _check_create(body, flavor)
        examples = _examples(self.contents[train["id"]])
        job = Job.create(self._id("ftjob-"), body, method, flavor, examples, self.clock.now())
        self.jobs[job.wire["id"]] = job
        self.lifecycle.start(job)
        return Response(200, job.wire)

    def _job(self, request: Request) -> Job:
        job = self.jobs.get(request.params["job_id"])
        if job is None:
            raise Invalid(f"No fine-tuning job found with id '{request.params['job_id']}'.", status=404)
        self.lifecycle.tick(job)
        return job

    def list_jobs(self, request: Request) -> Response:
        wanted = {k[len("metadata[") : -1]: v[0] for k, v in request.query.items() if k.startswith("metadata[")}
        found = []
        for job in reversed(self.jobs.values()):  # newest first
            self.lifecycle.tick(job)
            metadata = job.wire["metadata"] or {}
            if request.arg("metadata") == "null" and metadata:
                continue
            if all(metadata.get(k) == v for k, v in wanted.items()):
                found.append(job.wire)
        return _page(found, request)

    def get_job(self, request: Request) -> Response:
        return Response(200, self._job(request).wire)

    def cancel_job(self, request: Request) -> Response:
        job = self._job(request)
        if job.wire["status"] in TERMINAL:
            raise Invalid(f"Job {job.wire['id']} has already {job.wire['status']} and cannot be cancelled")
        self.lifecycle.enter(job, "cancelled", self.clock.now())
        return Response(200, job.wire)

    def pause_job(self, request: Request) -> Response:
        job = self._job(request)
        if job.wire["status"] != "running":
            raise Invalid(f"Only running jobs can be paused; job {job.wire['id']} is {job.wire['status']}")
        self.lifecycle.enter(job, "paused", self.clock.now())
        return Response(200, job.wire)

    def resume_job(self, request: Request) -> Response:
        job = self._job(request)
        if job.wire["status"] != "paused":
            raise Invalid(f"Only paused jobs can be resumed; job {job.wire['id']} is {job.wire['status']}")
        self.lifecycle.resume(job)
        return Response(200, job.wire)

    def list_events(self, request: Request) -> Response:
        return _page(list(reversed(self._job(request).events)), request)

    def list_checkpoints(self, request: Request) -> Response:
        return _page(list(reversed(self._job(request).checkpoints)), request)

    # -- driving jobs from tests ---------------------------------------------------------------------

    def advance(self, job_id: str, to: str) -> None:
        """Drive a job to `to` ("running", "succeeded", "failed"), moving the clock as far as that takes."""
        with self.lock:
            self.lifecycle.advance(self.jobs[job_id], to)

    def set_status(self, job_id: str, status: str) -> None:
        """Put a job in any status string, e.g. one the SDK has never heard of."""
        with self.lock:
            self.jobs[job_id].wire["status"] = status

    # -- inference -----------------------------------------------------------------------------------

    def chat(self, request: Request) -> Response:
        """Answer from the fine-tuned model's training data: a model that learned its examples by heart."""
        body = request.json()
        model = body.get("model")
        if _flavor(request.path) != "openai":  # Azure: `model` (or the dated path) names a deployment
            name = request.params.get("deployment") or model
            if name not in self.deployments:
                return error(404, f"The API deployment {name} does not exist", code="DeploymentNotFound")
            model = self.deployments[name]
        job = next((j for j in self.jobs.values() if j.wire["fine_tuned_model"] == model), None)
        if job is None:
            return error(404, f"The model '{model}' does not exist", param="model", code="model_not_found")
        asked = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        answer = "I don't know."
        for example in job.examples:
            messages = example.get("messages", [])
            for question, reply in itertools.pairwise(messages):
                if question["role"] == "user" and question["content"] == asked and reply["role"] == "assistant":
                    answer = reply["content"]
        return Response(
            200,
            {
                "id": self._id("chatcmpl-"),
                "object": "chat.completion",
                "created": self.now(),
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
        )


def _flavor(path: str) -> str:
    return next((f for p, f in PREFIXES.items() if path.startswith(p + "/")), "unknown")


def _check_purpose(purpose: str) -> None:
    if purpose not in ("assistants", "batch", "fine-tune", "vision", "user_data", "evals"):
        raise Invalid(f"'{purpose}' is not one of the supported purposes", "purpose")


def multipart(request: Request) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart body: name → (filename, bytes)."""
    ctype = {k.lower(): v for k, v in request.headers.items()}.get("content-type", "")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + request.body)
    form: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = str(part.get_param("name", header="content-disposition"))
        form[name] = (part.get_filename(), bytes(part.get_payload(decode=True)))
    return form


def _examples(data: bytes) -> list[dict[str, Any]]:
    try:
        lines = data.decode("utf-8-sig").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"Invalid file format: the file is not JSONL ({exc})", "file") from None


def _check_create(body: dict[str, Any], flavor: str) -> dict[str, Any]:
    """The rules the platform applies to a create request; returns the method object."""
    suffix = body.get("suffix")
    if suffix is not None and not 1 <= len(suffix) <= (64 if flavor == "openai" else 18):
        raise Invalid("suffix must be 1 to 64 characters (18 on Azure)", "suffix")
    if suffix and flavor != "openai" and "." in suffix:
        raise Invalid("suffix must not contain '.'", "suffix")
    if "seed" in body and not 0 <= body["seed"] <= 2_147_483_647:
        raise Invalid("seed must be between 0 and 2147483647", "seed")
    metadata = body.get("metadata") or {}
    if len(metadata) > 16 or any(len(k) > 64 or len(str(v)) > 512 for k, v in metadata.items()):
        raise Invalid("metadata: at most 16 pairs, keys up to 64 and values up to 512 characters", "metadata")
    integrations = body.get("integrations") or []
    if len(integrations) > 5 or any(
        i.get("type") != "wandb" or "project" not in i.get("wandb", {}) for i in integrations
    ):
        raise Invalid("integrations: at most 5, each of type 'wandb' with a project", "integrations")
    if "trainingType" in body and str(body["trainingType"]).lower() not in TRAINING_TYPES:
        raise Invalid("trainingType must be one of Standard, GlobalStandard, Developer", "trainingType")
    method = body.get("method") or {
        "type": "supervised",
        "supervised": {"hyperparameters": body.get("hyperparameters", {})},
    }
    if method.get("type") not in ("supervised", "dpo", "reinforcement"):
        raise Invalid("method.type must be supervised, dpo or reinforcement", "method.type")
    hyper = method.get(method["type"], {}).get("hyperparameters", {})
    limits = {"n_epochs": (1, 50), "batch_size": (1, 256), "learning_rate_multiplier": (1e-9, 1e9), "beta": (1e-9, 2)}
    for name, value in hyper.items():
        low, high = limits.get(name, (None, None))
        if low is None or (method["type"] != "dpo" and name == "beta"):
            raise Invalid(f"unknown hyperparameter '{name}' for {method['type']}", f"method.{method['type']}")
        if value != "auto" and not low <= value <= high:
            raise Invalid(f"{name} must be 'auto' or between {low} and {high}", f"method.{method['type']}.{name}")
    return method


def _page(items: list[dict[str, Any]], request: Request) -> Response:
    """Cursor pagination as the platform does it: `after` an id, `limit` items, `has_more`."""
    after, limit = request.arg("after"), int(request.arg("limit") or 20)
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    return Response(200, {"object": "list", "data": items[:limit], "has_more": len(items) > limit})
