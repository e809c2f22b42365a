"""SageMaker, S3 and CloudWatch Logs for tests: a moto server behind the harness proxy, plus the
training-job behaviour moto lacks, kept as state in the proxy layer.

moto answers S3, CloudWatch Logs and the SageMaker calls it implements (create/describe/list training
jobs, tags). Its training jobs are `Completed` the moment they are created and it has no
StopTrainingJob, so this layer tracks each job's lifecycle on the emulator's clock and rewrites the
Describe/List answers: InProgress/Starting after create, then whatever `advance` moves the job to
(running, succeeded, failed, stopped), with SecondaryStatusTransitions, FailureReason, billable seconds
and final metrics as SageMaker reports them; StopTrainingJob moves a job to Stopping, and Stopped after
`stop_seconds`. Advancing a job also writes the container's log lines to CloudWatch, as SageMaker does.
Serverless jobs (ServerlessJobConfig) are refused with a clear error: moto crashes on them, and their
request shape is tested with botocore's Stubber instead.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from tests.emulators.harness import Clock, Proxy, Request, Response

REGION, ACCOUNT = "us-east-1", "123456789012"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")
# how AWS JSON services answer faults (most errors are HTTP 400 with the code in __type)
AWS_FAULTS = {
    "401": (400, "UnrecognizedClientException", "The security token included in the request is invalid."),
    "404": (400, "ValidationException", "Requested resource not found."),
    "429": (400, "ThrottlingException", "Rate exceeded"),
    "500": (500, "InternalFailure", "An internal error occurred."),
    "503": (503, "ServiceUnavailable", "Service is unavailable."),
}
STEPS = {  # what advance(to) walks through: (secondary status, message) after the current one
    "running": [
        ("Downloading", "Downloading input data"),
        ("Training", "Training image download completed. Training in progress."),
    ],
    "succeeded": [("Uploading", "Uploading generated training model"), ("Completed", "Training job completed")],
    "failed": [("Failed", "Training job failed")],
    "interrupted": [("Interrupted", "Spot capacity was reclaimed; waiting to restart")],
    "stopped": [("Stopped", "Training job stopped")],
}


def aws_error(status: int, code: str, message: str) -> Response:
    return Response(status, {"__type": code, "message": message}, {"Content-Type": "application/x-amz-json-1.1"})


@dataclass
class Lifecycle:
    """One training job as SageMaker would report it, moved by the emulator."""

    request: dict[str, Any]
    created: float
    status: str = "InProgress"
    secondary: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None
    training_started: float | None = None
    ended: float | None = None
    stop_requested: float | None = None
    metrics: dict[str, float] = field(default_factory=lambda: {"train:loss": 0.42, "validation:loss": 0.51})

    def move(self, secondary: str, message: str, now: float) -> None:
        if self.transitions:
            self.transitions[-1]["EndTime"] = now
        self.transitions.append({"Status": secondary, "StartTime": now, "StatusMessage": message})
        self.secondary = secondary
        if secondary == "Training" and self.training_started is None:
            self.training_started = now
        self.status = {"Completed": "Completed", "Failed": "Failed", "Stopped": "Stopped"}.get(
            secondary, "Stopping" if secondary == "Stopping" else "InProgress"
        )
        if self.status in TERMINAL:
            self.ended = now

    def overlay(self, body: dict[str, Any]) -> dict[str, Any]:
        """A DescribeTrainingJob answer for the job's current state, on top of what moto stored."""
        body = {**body, "TrainingJobStatus": self.status, "SecondaryStatus": self.secondary}
        body["SecondaryStatusTransitions"] = self.transitions
        for key in ("Environment", "ServerlessJobConfig"):  # moto drops these
            if key in self.request:
                body[key] = self.request[key]
        for key in ("FinalMetricDataList", "TrainingEndTime", "ModelArtifacts", "BillableTimeInSeconds"):
            body.pop(key, None)
        if self.training_started is not None:
            body["TrainingStartTime"] = self.training_started
        if self.failure:
            body["FailureReason"] = self.failure
        if self.status in TERMINAL and self.ended is not None:
            seconds = max(1, int(self.ended - self.created))
            spot = bool(self.request.get("EnableManagedSpotTraining"))
            body["TrainingEndTime"] = self.ended
            body["TrainingTimeInSeconds"] = seconds
            body["BillableTimeInSeconds"] = max(1, int(seconds * (0.3 if spot else 1.0)))
            output = self.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            body["ModelArtifacts"] = {"S3ModelArtifacts": f"{output}/{body['TrainingJobName']}/output/model.tar.gz"}
            if self.status == "Completed":
                body["FinalMetricDataList"] = [
                    {"MetricName": k, "Value": v, "Timestamp": self.ended} for k, v in self.metrics.items()
                ]
        return body


class SageMakerEmulator(Proxy):
    """Start with `.start()`; point boto3 at `.url` (AWS_ENDPOINT_URL)."""

    def __init__(self, clock: Clock | None = None, *, stop_seconds: float = 30.0) -> None:
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        super().__init__(f"http://{host}:{port}", clock or Clock(time.time()))
        # moto keeps its state per process, not per server: start from an empty platform
        urllib.request.urlopen(urllib.request.Request(f"{self.upstream}/moto-api/reset", method="POST")).close()
        self.jobs: dict[str, Lifecycle] = {}
        self.stop_seconds = stop_seconds

    def stop(self) -> None:
        super().stop()
        self.moto.stop()

    def direct(self, service: str) -> Any:
        """A client straight to moto (no proxy, no faults, not counted): for tests to seed and inspect."""
        return boto3.client(
            service,
            endpoint_url=self.upstream,
            region_name=REGION,
            aws_access_key_id="emulator",
            aws_secret_access_key="emulator-secret",
        )

    # -- what tests ask ------------------------------------------------------------------------------

    def created(self) -> list[dict[str, Any]]:
        """Every CreateTrainingJob request that reached the platform, as sent."""
        return [job.request for job in self.jobs.values()]

    def remote_jobs(self) -> list[str]:
        pages = self.direct("sagemaker").get_paginator("list_training_jobs").paginate()
        return [s["TrainingJobName"] for page in pages for s in page["TrainingJobSummaries"]]

    def uploads(self) -> int:
        """S3 object PUTs (bucket creation excluded) that reached the platform."""
        return sum(
            1
            for r in self.requests
            if r.method == "PUT" and "X-Amz-Target" not in r.headers and r.path.strip("/").count("/") >= 1
        )

    # -- what tests do -------------------------------------------------------------------------------

    def advance(self, name: str, to: str, *, reason: str | None = None) -> None:
        """Move a job to "running", "succeeded", "failed", "interrupted" or "stopped" (through the states
        in between), stepping the clock 30 s per transition."""
        job = self.jobs[name]
        if to in ("succeeded", "failed") and job.training_started is None:
            self.advance(name, "running")
        if to != "running":  # the container logs before the job ends
            self._log(name, to)
        with self.lock:
            for secondary, message in STEPS[to]:
                self.clock.advance(30)
                if secondary == "Failed":
                    job.failure = reason or "AlgorithmError: ExecuteUserScriptError: CUDA out of memory"
                    message = f"Training job failed. Reason: {job.failure}"
                job.move(secondary, message, self.clock.now())
        if to == "running":
            self._log(name, to)

    def log(self, name: str, lines: list[str], *, host: int = 1) -> None:
        """Write container log lines to the job's CloudWatch stream for instance `host`."""
        logs = self.direct("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=LOG_GROUP)
        stream = f"{name}/algo-{host}-{int(self.jobs[name].created)}"
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(self.clock.now() * 1000)
        events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)

    def _log(self, name: str, to: str) -> None:
        count = self.jobs[name].request.get("ResourceConfig", {}).get("InstanceCount", 1)
        lines = {
            "running": ["Invoking script with the following command: /opt/conda/bin/python sagemaker_entry.py"],
            "succeeded": ['{"step": 10, "train_loss": 0.42}', '{"eval_loss": 0.51}', "training finished"],
            "failed": ["torch.OutOfMemoryError: CUDA out of memory"],
        }.get(to)
        for host in range(1, count + 1) if lines else ():
            self.log(name, [f"{line}" for line in lines or []], host=host)

    # -- the wire ------------------------------------------------------------------------------------

    def fault_response(self, fault: str) -> Response:
        status, code, message = AWS_FAULTS[fault]
        response = aws_error(status, code, message)
        if fault == "429":
            response.headers["Retry-After"] = str(self.faults.retry_after)
        return response

    def dispatch(self, request: Request) -> Response:
        # moto (werkzeug) reads no body after an `Expect: 100-continue` it did not answer: drop the header
        request.headers = {k: v for k, v in request.headers.items() if k.lower() != "expect"}
        target = request.headers.get("X-Amz-Target", "")
        action = target.removeprefix("SageMaker.") if target.startswith("SageMaker.") else ""
        if action == "StopTrainingJob":
            return self._stop(request.json()["TrainingJobName"])
        if action == "CreateTrainingJob":
            body = request.json()
            if "ServerlessJobConfig" in body:
                return aws_error(400, "ValidationException", "this emulator does not run serverless jobs")
            if body["TrainingJobName"] in self.jobs:
                return aws_error(400, "ResourceInUse", f"Training job names must be unique: {body['TrainingJobName']}")
        response = super().dispatch(request)
        if response.status != 200 or not action:
            return response
        if action == "CreateTrainingJob":
            body = request.json()
            job = Lifecycle(request=body, created=self.clock.now())
            job.move("Starting", "Launching requested ML instances", job.created)
            self.jobs[body["TrainingJobName"]] = job
            return response
        if action == "DescribeTrainingJob":
            answer = json.loads(response.body)
            if job := self._job(answer["TrainingJobName"]):
                answer = job.overlay(answer)
            return Response(200, answer, {"Content-Type": "application/x-amz-json-1.1"})
        if action == "ListTrainingJobs":
            answer = json.loads(response.body)
            for summary in answer.get("TrainingJobSummaries", []):
                if job := self._job(summary["TrainingJobName"]):
                    summary["TrainingJobStatus"] = job.status
            return Response(200, answer, {"Content-Type": "application/x-amz-json-1.1"})
        return response

    def _job(self, name: str) -> Lifecycle | None:
        job = self.jobs.get(name)
        stopping = job is not None and job.status == "Stopping" and job.stop_requested is not None
        if job and stopping and self.clock.now() - (job.stop_requested or 0) >= self.stop_seconds:
            job.move("Stopped", "Training job stopped", self.clock.now())
        return job

    def _stop(self, name: str) -> Response:
        job = self._job(name)
        if job is None:
            return aws_error(400, "ValidationException", "Requested resource not found.")
        if job.status in TERMINAL or job.status == "Stopping":
            return aws_error(400, "ValidationException", f"The training job is in status {job.status}.")
        job.stop_requested = self.clock.now()
        job.move("Stopping", "Stopping the training job", job.stop_requested)
        return Response(200, {}, {"Content-Type": "application/x-amz-json-1.1"})
