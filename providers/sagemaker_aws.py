"""The AWS side of the SageMaker adapter: the boto3 clients it uses, the one place where botocore's
exceptions become the finetune-hub error family, and reading a job's CloudWatch logs.

Endpoints, credentials and region come from boto3's standard chain (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, profiles, instance roles, `AWS_REGION`), so the same code
talks to AWS, a VPC endpoint or a local moto server.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions as bx
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config

from finetune_hub.errors import (
    AuthError,
    ConfigError,
    InvalidRequest,
    NotFound,
    ProviderError,
    QuotaError,
    http_error,
    retry_after,
)

# AWS error codes, grouped by what the caller can do about them. AWS JSON services answer most of these
# with HTTP 400, so the code (botocore's exception class name) decides, never the message text.
THROTTLED = frozenset(
    {"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
)
DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidSignatureException",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
    }
)
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MISSING = frozenset({"ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "NotFound"})
LIMITED = frozenset({"ResourceLimitExceeded", "ServiceQuotaExceededException"})


@dataclass(frozen=True)
class AwsClients:
    """The three clients the adapter needs, built from one session (inject your own for tests)."""

    sagemaker: Any
    s3: Any
    logs: Any

    @classmethod
    def create(cls, region: str | None = None, *, config: Config | None = None) -> AwsClients:
        """Clients for `region`; `config` is merged over the defaults (e.g. retries off and short timeouts)."""
        base = Config(retries={"mode": "standard"}, user_agent_extra="finetune-hub")
        merged = base.merge(config) if config else base
        session = boto3.Session(region_name=region)
        return cls(*(session.client(name, config=merged) for name in ("sagemaker", "s3", "logs")))

    @property
    def region(self) -> str:
        return str(self.sagemaker.meta.region_name)


def default_region() -> str | None:
    """The region boto3 would pick (AWS_REGION, AWS_DEFAULT_REGION, the profile), read without a network call."""
    region: str | None = boto3.Session().region_name
    return region


def knows_serverless_jobs() -> bool:
    """Whether the installed botocore's SageMaker model has ServerlessJobConfig (added in late 2025)."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    return "ServerlessJobConfig" in model.operation_model("CreateTrainingJob").input_shape.members


@contextmanager
def translate(action: str, *, missing_is_not_found: bool = False) -> Iterator[None]:
    """Run one AWS call; its failures leave as FthErrors (redacted, with `retryable` set).

    `missing_is_not_found`: for Describe calls whose only input is a name, SageMaker answers an unknown
    name with `ValidationException` (HTTP 400), so that code means "no such job" there.
    """
    try:
        yield
    except bx.ClientError as exc:
        raise _from_client_error(action, exc, missing_is_not_found) from None
    except S3UploadFailedError as exc:
        cause = exc.__context__
        if isinstance(cause, bx.ClientError):
            raise _from_client_error(action, cause, False) from None
        raise ProviderError(f"{action}: {exc}", retryable=True) from None
    except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError) as exc:
        raise AuthError(
            f"{action}: no usable AWS credentials ({type(exc).__name__})",
            hint="set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure`",
        ) from None
    except bx.NoRegionError:
        raise ConfigError(
            f"{action}: no AWS region", hint="set providers.sagemaker.region in the spec, or AWS_REGION"
        ) from None
    except bx.ParamValidationError as exc:
        raise InvalidRequest(f"{action}: the request does not match the SageMaker API: {exc}") from None
    except (bx.HTTPClientError, bx.ConnectionError) as exc:
        # connection refused or dropped, read timeouts: the request may or may not have been processed
        raise ProviderError(f"{action}: {type(exc).__name__}: {exc}", retryable=True) from None


def _from_client_error(action: str, exc: bx.ClientError, missing_is_not_found: bool) -> ProviderError:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code") or "")
    status = int(meta.get("HTTPStatusCode") or 0)
    wait = retry_after(meta.get("HTTPHeaders"))
    message = f"{action}: {code or status}: {error.get('Message') or 'no message'}"
    if code in THROTTLED:
        return QuotaError(message, retry_after=wait)
    if code in DENIED:
        return AuthError(message, status_code=status, hint="check the AWS credentials and the IAM permissions")
    if code in MISSING or (missing_is_not_found and code == "ValidationException"):
        return NotFound(message, status_code=status)
    if code in LIMITED:
        return InvalidRequest(message, status_code=status, hint="ask AWS for a quota increase (Service Quotas)")
    if status == 0:
        return ProviderError(message, retryable=True)
    return http_error(status, message, retry_after=wait)


def log_streams(logs: Any, job_name: str) -> list[str]:
    """The job's log streams, one per instance ("<job>/algo-1-<epoch>"); none before the job logs."""
    try:
        with translate("CloudWatch DescribeLogStreams"):
            pages = logs.get_paginator("describe_log_streams").paginate(
                logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/"
            )
            return sorted(s["logStreamName"] for page in pages for s in page.get("logStreams", []))
    except NotFound:  # the log group appears with the account's first job that logs
        return []


def read_streams(logs: Any, streams: list[str], tokens: MutableMapping[str, str]) -> Iterator[str]:
    """New lines of each stream since `tokens` (updated), prefixed with the instance when there are several."""
    for stream in streams:
        host = stream.split("/", 1)[-1].rsplit("-", 1)[0]  # "<job>/algo-1-1700000000" → "algo-1"
        while True:
            since = {"nextToken": tokens[stream]} if stream in tokens else {}
            with translate("CloudWatch GetLogEvents"):
                page = logs.get_log_events(logGroupName=LOG_GROUP, logStreamName=stream, startFromHead=True, **since)
            for event in page.get("events", []):
                yield f"[{host}] {event['message']}" if len(streams) > 1 else event["message"]
            token = page.get("nextForwardToken")
            at_end = not page.get("events") or token in (None, tokens.get(stream))  # same token: no more yet
            if token:
                tokens[stream] = token
            if at_end:
                break
