"""Connecting to Vertex AI and Cloud Storage, and turning their errors into finetune-hub's, in one place.

Two SDKs are involved: google-genai (the tuning API and generateContent, over httpx) and google-cloud-storage
(uploads, over requests). Both take Application Default Credentials unless credentials are passed in.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import requests
from google import genai
from google.api_core import exceptions as gcs_errors
from google.auth import exceptions as auth_errors
from google.cloud import storage
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel, ConfigDict, Field

from finetune_hub.errors import AuthError, FthError, ProviderError, http_error, retry_after


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures: google-genai runs on httpx or its fork httpx2, Cloud Storage on requests."""
    found: list[type[BaseException]] = [requests.ConnectionError, requests.Timeout, auth_errors.TransportError]
    found += [importlib.import_module(m).TransportError for m in ("httpx", "httpx2") if importlib.util.find_spec(m)]
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()


class VertexSettings(BaseModel):
    """The spec's `providers.vertex` block. Project, location and bucket may come from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = Field(default=None, description="else $GOOGLE_CLOUD_PROJECT")
    location: str | None = Field(default=None, description="else $GOOGLE_CLOUD_LOCATION, e.g. us-central1")
    bucket: str | None = Field(default=None, description='"name" or "gs://name/prefix"; else $FTH_VERTEX_BUCKET')
    prefix: str = Field(default="finetune-hub", description="object prefix for uploaded data in the bucket")
    api_version: Literal["v1", "v1beta1"] = "v1"
    base_url: str | None = Field(default=None, description="private endpoint; else $GOOGLE_VERTEX_BASE_URL")
    timeout_s: float = Field(default=120.0, gt=0, description="per HTTP request")
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels on the tuning job")


@dataclass(frozen=True)
class VertexClients:
    """The two SDK clients a Vertex job uses: the tuning API and Cloud Storage."""

    genai: genai.Client
    storage: storage.Client


def make_clients(
    project: str,
    location: str,
    *,
    api_version: str = "v1",
    base_url: str | None = None,
    timeout_s: float = 120.0,
    credentials: Any = None,
) -> VertexClients:
    """Clients for one project and region; `credentials=None` means Application Default Credentials.
    SDK retries are off: `FineTuneJob.retrying` retries every call once, the same way on every platform."""
    http = types.HttpOptions(
        api_version=api_version,
        base_url=base_url,
        timeout=int(timeout_s * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    tuning = genai.Client(vertexai=True, project=project, location=location, credentials=credentials, http_options=http)
    return VertexClients(tuning, storage.Client(project=project, credentials=credentials))


@contextlib.contextmanager
def translate(doing: str) -> Iterator[None]:
    """Every SDK failure → the FthError family, by status code or exception class (never by message text)."""
    try:
        yield
    except FthError:
        raise
    except genai_errors.APIError as exc:
        text = f"Vertex AI, {doing}: {exc.status or exc.code}: {exc.message}"
        raise http_error(exc.code, text, retry_after=retry_after(getattr(exc.response, "headers", None))) from None
    except gcs_errors.GoogleAPICallError as exc:
        code = exc.code if isinstance(exc.code, int) else 500
        text = f"Cloud Storage, {doing}: {exc.message}"
        raise http_error(code, text, retry_after=retry_after(getattr(exc.response, "headers", None))) from None
    except auth_errors.DefaultCredentialsError:
        raise AuthError(
            f"no Google Cloud credentials found while {doing}",
            hint="run `gcloud auth application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS",
        ) from None
    except auth_errors.RefreshError as exc:
        raise AuthError(f"Google Cloud credentials were refused while {doing}: {exc}") from None
    except _TRANSPORT_ERRORS as exc:
        text = f"could not reach Google Cloud while {doing}: {type(exc).__name__}"
        raise ProviderError(text, retryable=True) from None
