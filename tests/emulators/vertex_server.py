"""A small stateful fake of Vertex AI's tuning REST API, plus `generateContent` on tuned endpoints.

It speaks the wire format google-genai sends (`/v1` and `/v1beta1`, camelCase JSON, int64 as strings) and
answers errors in Google's shape (`{"error": {"code", "message", "status"}}`), so the real SDK runs unchanged
against it. Jobs move only when a test calls `advance`, except that a job cancelled through the API finishes
cancelling the next time it is read. `VertexStack` starts it beside gcp-storage-emulator (behind a `Proxy`, which counts
uploads and injects storage faults).
"""

from __future__ import annotations

import copy
import itertools
import re
import socket
import threading
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from tests.emulators.harness import Clock, Emulator, Proxy, Request, Response

STATES = (
    "JOB_STATE_UNSPECIFIED",
    "JOB_STATE_QUEUED",
    "JOB_STATE_PENDING",
    "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLING",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
)
TERMINAL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"}
FINISHED_WITH_MODEL = {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
ADAPTER_SIZES = {"ADAPTER_SIZE_ONE", "ADAPTER_SIZE_TWO", "ADAPTER_SIZE_FOUR", "ADAPTER_SIZE_EIGHT"}
ADAPTER_SIZES |= {"ADAPTER_SIZE_SIXTEEN", "ADAPTER_SIZE_THIRTY_TWO"}
TUNABLE = ("gemini-", "translation-llm", "projects/")  # Gemini models, and tuned models (continuous tuning)
CREATE_FIELDS = {
    "baseModel",
    "preTunedModel",
    "supervisedTuningSpec",
    "preferenceOptimizationSpec",
    "tunedModelDisplayName",
    "description",
    "labels",
    "encryptionSpec",
    "serviceAccount",
    "outputUri",
}
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_FILTER_TERM = re.compile(r'^labels\.([a-z0-9_-]+)\s*=\s*"([^"]*)"$')
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND"}
_STATUS |= {429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}


def google_error(code: int, message: str, status: str | None = None) -> Response:
    return Response(code, {"error": {"code": code, "message": message, "status": status or _STATUS.get(code, "")}})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VertexEmulator(Emulator):
    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # request bodies of accepted creates, in order
        self.tokens: list[str] = []  # bearer tokens seen, so tests can check where they end up
        self.billable_tokens = 4_321  # what the platform reports counting in the training file
        self.denied_projects: set[str] = set()  # projects the caller has no permission on (403)
        self._cancel_requested: set[str] = set()
        self._ids = itertools.count(8_000_000_000_000_000_001)
        for version in ("v1", "v1beta1"):
            base = f"/{version}/projects/{{project}}/locations/{{location}}"
            self.route("POST", base + "/tuningJobs", self._create)
            self.route("GET", base + "/tuningJobs", self._list)
            self.route("GET", base + "/tuningJobs/{job}", self._get)
            self.route("POST", base + "/tuningJobs/{job}:cancel", self._cancel)
            self.route("POST", base + "/endpoints/{endpoint}:generateContent", self._generate)
            self.route("POST", base + "/publishers/google/models/{model}:generateContent", self._generate)
        for method in ("GET", "POST", "DELETE", "PATCH"):  # anything else: Google's 404, not the harness's
            self.route(method, "/.*", lambda r: google_error(404, f"The requested URL {r.path} was not found."))

    # -- plumbing ------------------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:
        auth = next((v for k, v in request.headers.items() if k.lower() == "authorization"), "")
        if not auth.startswith("Bearer ") or not auth.removeprefix("Bearer ").strip():
            return google_error(401, "Request is missing required authentication credential.")
        self.tokens.append(auth.removeprefix("Bearer "))
        project = request.path.split("/projects/", 1)[-1].split("/", 1)[0]
        if project in self.denied_projects:
            return google_error(403, f"Permission denied on resource project {project}.")
        return super().dispatch(request)

    def fault_response(self, fault: str) -> Response:
        response = google_error(int(fault), f"injected {fault}")
        if fault == "429":
            response.headers["Retry-After"] = str(self.faults.retry_after)
        return response

    def _now(self) -> str:
        return datetime.fromtimestamp(self.clock.now(), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _job(self, request: Request) -> dict[str, Any] | None:
        p = request.params
        return self.jobs.get(f"projects/{p['project']}/locations/{p['location']}/tuningJobs/{unquote(p['job'])}")

    # -- routes --------------------------------------------------------------------------------------

    def _create(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            return google_error(400, "Invalid JSON payload received.")
        if problem := _invalid_create(body):
            return google_error(400, problem)
        p = request.params
        name = f"projects/{p['project']}/locations/{p['location']}/tuningJobs/{next(self._ids)}"
        now = self._now()
        job = {**copy.deepcopy(body), "name": name, "state": "JOB_STATE_PENDING", "createTime": now, "updateTime": now}
        self.jobs[name] = job
        self.created.append(body)
        return Response(200, job)

    def _get(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return google_error(404, f"TuningJob {request.params['job']} does not exist.")
        if job["name"] in self._cancel_requested:  # a cancellation asked for through the API ends by the next read
            self._cancel_requested.discard(job["name"])
            self._set_state(job, "JOB_STATE_CANCELLED")
        return Response(200, job)

    def _list(self, request: Request) -> Response:
        wanted: list[tuple[str, str]] = []
        text = request.arg("filter") or ""
        for term in filter(None, (t.strip() for t in re.split(r"\s+AND\s+", text))):
            match = _FILTER_TERM.match(term)
            if match is None:
                return google_error(400, f'Unsupported filter: "{text}"')
            wanted.append((match.group(1), match.group(2)))
        prefix = "projects/{project}/locations/{location}/".format(**request.params)
        found = [
            job
            for name, job in sorted(self.jobs.items(), key=lambda kv: kv[1]["createTime"], reverse=True)
            if name.startswith(prefix) and all(job.get("labels", {}).get(k) == v for k, v in wanted)
        ]
        size = int(request.arg("pageSize") or 50)
        start = int(request.arg("pageToken") or 0)
        page: dict[str, Any] = {"tuningJobs": found[start : start + size]} if found[start : start + size] else {}
        if start + size < len(found):
            page["nextPageToken"] = str(start + size)
        return Response(200, page)

    def _cancel(self, request: Request) -> Response:
        job = self._job(request)
        if job is None:
            return google_error(404, f"TuningJob {request.params['job']} does not exist.")
        if job["state"] in TERMINAL:
            return google_error(400, f"Cannot cancel tuning job in state {job['state']}.", "FAILED_PRECONDITION")
        self._set_state(job, "JOB_STATE_CANCELLING")
        self._cancel_requested.add(job["name"])
        return Response(200, {})

    def _generate(self, request: Request) -> Response:
        p = request.params
        if "endpoint" in p:
            endpoint = f"projects/{p['project']}/locations/{p['location']}/endpoints/{p['endpoint']}"
            if not any((j.get("tunedModel") or {}).get("endpoint") == endpoint for j in self.jobs.values()):
                return google_error(404, f"Endpoint {endpoint} not found.")
            who = f"tuned:{p['endpoint']}"
        else:
            who = f"base:{p['model']}"
        body = request.json() or {}
        contents = body.get("contents") or []
        if not contents or any(c.get("role") not in ("user", "model") for c in contents):
            return google_error(400, "contents must be a non-empty list of user and model turns.")
        last = " ".join(part.get("text", "") for part in contents[-1].get("parts", []))
        system = " ".join(part.get("text", "") for part in (body.get("systemInstruction") or {}).get("parts", []))
        text = f"[{who}] {last}" + (f" (system: {system})" if system else "")
        usage = {"promptTokenCount": len(last) // 4 + 1, "candidatesTokenCount": len(text) // 4 + 1}
        candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        return Response(200, {"candidates": [candidate], "usageMetadata": usage})

    # -- test controls -------------------------------------------------------------------------------

    def find(self, ref: str) -> dict[str, Any]:
        """A job by full resource name or trailing id."""
        for name, job in self.jobs.items():
            if ref in (name, name.rsplit("/", 1)[-1]):
                return job
        raise KeyError(ref)

    def advance(self, ref: str, to: str) -> dict[str, Any]:
        """Move a job to `to`: "running", "succeeded", ... or any JOB_STATE_* value (others: as given)."""
        state = to if to.startswith("JOB_STATE_") else f"JOB_STATE_{to.upper()}"
        with self.lock:
            job = self.find(ref)
            self._set_state(job, state)
            return job

    def _set_state(self, job: dict[str, Any], state: str) -> None:
        now = self._now()
        job["state"], job["updateTime"] = state, now
        if state in ("JOB_STATE_RUNNING", *FINISHED_WITH_MODEL):
            job.setdefault("startTime", now)
            job["tuningJobState"] = "TUNING_JOB_STATE_TUNING"
        if state in TERMINAL or state == "JOB_STATE_PARTIALLY_SUCCEEDED":
            job["endTime"] = now
            job.pop("tuningJobState", None)
        if state in FINISHED_WITH_MODEL:
            self._finish(job)
        if state == "JOB_STATE_FAILED":
            job["error"] = {"code": 3, "message": "Dataset validation failed: line 3 has no model turn."}
        if state == "JOB_STATE_CANCELLED":
            job["error"] = {"code": 1, "message": "CANCELLED"}
        if state == "JOB_STATE_PARTIALLY_SUCCEEDED":
            job["error"] = {"code": 13, "message": "Evaluation on the validation set did not complete."}

    def _finish(self, job: dict[str, Any]) -> None:
        base, _, number = job["name"].rpartition("/tuningJobs/")
        spec = job.get("supervisedTuningSpec") or job.get("preferenceOptimizationSpec") or {}
        epochs = int((spec.get("hyperParameters") or {}).get("epochCount") or 3)
        endpoint = f"{base}/endpoints/{number[-6:]}"
        job["tunedModel"] = {
            "model": f"{base}/models/{number[-7:]}@1",
            "endpoint": endpoint,
            "checkpoints": [
                {"checkpointId": str(e), "epoch": str(e), "step": str(10 * e), "endpoint": f"{endpoint}{e}"}
                for e in range(1, epochs + 1)
            ],
        }
        stats = {"tuningDatasetExampleCount": "12", "totalBillableTokenCount": str(self.billable_tokens)}
        stats |= {"tuningStepCount": str(10 * epochs), "totalTuningCharacterCount": str(4 * self.billable_tokens)}
        key = "preferenceOptimizationDataStats" if "preferenceOptimizationSpec" in job else "supervisedTuningDataStats"
        job["tuningDataStats"] = {key: stats}
        job["experiment"] = f"{base}/metadataStores/default/contexts/tuning-experiment-{number}"
        job["gcsMetricsUri"] = f"gs://vertex-tuning-metrics/{number}/"


def _invalid_create(body: dict[str, Any]) -> str | None:
    """Google's message for the first thing wrong with a create request, or None."""
    if unknown := sorted(set(body) - CREATE_FIELDS):
        return f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
    if not body.get("baseModel") and not body.get("preTunedModel"):
        return "base_model is required."
    if body.get("baseModel") and not str(body["baseModel"]).startswith(TUNABLE):
        return f"Base model {body['baseModel']} is not supported for tuning."
    specs = [k for k in ("supervisedTuningSpec", "preferenceOptimizationSpec") if k in body]
    if len(specs) != 1:
        return "Exactly one tuning spec must be set."
    spec = body[specs[0]]
    for field in ("trainingDatasetUri", "validationDatasetUri"):
        uri = spec.get(field)
        if (field == "trainingDatasetUri" or uri is not None) and not str(uri).startswith("gs://"):
            return f"{field} must be a Cloud Storage URI (gs://...), got {uri!r}."
    hyper = spec.get("hyperParameters") or {}
    if "epochCount" in hyper and not 1 <= int(hyper["epochCount"]) <= 100:
        return "epoch_count must be between 1 and 100."
    if "adapterSize" in hyper and hyper["adapterSize"] not in ADAPTER_SIZES:
        return f"Invalid value at 'adapter_size': {hyper['adapterSize']}."
    if "learningRateMultiplier" in hyper and not float(hyper["learningRateMultiplier"]) > 0:
        return "learning_rate_multiplier must be positive."
    if "beta" in hyper and specs[0] != "preferenceOptimizationSpec":
        return "beta is only valid for preference tuning."
    labels = body.get("labels") or {}
    for key, value in labels.items():
        if not _LABEL_KEY.match(key) or not _LABEL_VALUE.match(str(value)):
            return f"Label '{key}: {value}' violates format constraints."
    if len(str(body.get("tunedModelDisplayName", ""))) > 128:
        return "tuned_model_display_name must be at most 128 characters."
    return None


class VertexStack:
    """The fake tuning API plus gcp-storage-emulator behind a counting, fault-injecting proxy."""

    def __init__(self, bucket: str = "fth-test-bucket") -> None:
        from gcp_storage_emulator.server import create_server

        self.bucket = bucket
        self.vertex = VertexEmulator()
        self._gcs_port = free_port()
        self._gcs = create_server("127.0.0.1", self._gcs_port, in_memory=True, default_bucket=bucket)
        self.gcs: Proxy | None = None

    def start(self) -> VertexStack:
        self._gcs.start()
        self.gcs = Proxy(f"http://127.0.0.1:{self._gcs_port}")
        self.gcs.start()
        self.vertex.start()
        return self

    def stop(self) -> None:
        """Stop the three servers in the background: each waits out its polling interval (0.5 s) before it
        closes, and nothing needs their ports again, so tests need not wait for that."""
        for stop in (self.vertex.stop, self._gcs.stop, *([self.gcs.stop] if self.gcs else [])):
            threading.Thread(target=stop, daemon=True).start()

    @property
    def storage_url(self) -> str:
        assert self.gcs is not None
        return self.gcs.url

    def uploads(self) -> int:
        """Object uploads that reached storage (multipart POSTs and resumable-upload starts)."""
        assert self.gcs is not None
        return sum(1 for r in self.gcs.requests if r.method == "POST" and r.path.startswith("/upload/storage/v1/b/"))

    def objects(self) -> list[str]:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project="test", credentials=AnonymousCredentials(), client_options=self._options())
        return sorted(blob.name for blob in client.list_blobs(self.bucket))

    def read(self, uri: str) -> bytes:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        bucket, _, name = uri.removeprefix("gs://").partition("/")
        client = storage.Client(project="test", credentials=AnonymousCredentials(), client_options=self._options())
        return bytes(client.bucket(bucket).blob(name).download_as_bytes())

    def _options(self) -> dict[str, str]:
        return {"api_endpoint": self.storage_url}
