"""One error family for the whole tool: each error knows its exit code and whether a retry can help."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

_SECRET_ENV_HINTS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL")
_SECRET_PATTERNS = (
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._\-~+/=]{8,}"),
    re.compile(r"(?i)(api[-_]?key|access[-_]?token|secret|password)([\"']?\s*[:=]\s*[\"']?)[^\s\"',&]{6,}"),
)


def redact(text: str) -> str:
    """Remove secrets: values of secret-looking environment variables and common key shapes."""
    for name, value in os.environ.items():
        if len(value) >= 8 and any(h in name.upper() for h in _SECRET_ENV_HINTS) and value in text:
            text = text.replace(value, "***")
    text = _SECRET_PATTERNS[0].sub("sk-***", text)
    text = _SECRET_PATTERNS[1].sub("Bearer ***", text)
    return _SECRET_PATTERNS[2].sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


class FthError(Exception):
    """Root of every error finetune-hub raises on purpose. Messages are redacted."""

    exit_code = 2
    retryable = False

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = redact(message)
        self.hint = redact(hint) if hint else None
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(FthError):
    """The spec or a setting is wrong; nothing was sent anywhere."""


class DataError(FthError):
    """The dataset is wrong; nothing was uploaded."""


class UnsupportedFeature(FthError):
    """The platform cannot do what the spec asks."""


class ProviderRetired(FthError):
    """The platform (or base model) no longer accepts fine-tuning jobs."""


class MissingDependency(FthError):
    """An optional extra is not installed."""


class WaitTimedOut(FthError):
    """A wait's timeout ran out while the job was still going (`state`: what it was doing then)."""

    exit_code = 4

    def __init__(self, message: str, *, state: Any, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.state = state


class ProviderError(FthError):
    """The platform answered with an error. `retryable` says whether trying again can help."""

    exit_code = 3

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        retryable: bool = False,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after


class AuthError(ProviderError):
    """Credentials missing, wrong or without permission."""


class QuotaError(ProviderError):
    """Rate limit or quota hit; retryable after `retry_after` seconds when the platform says."""

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint, retryable=True, status_code=429, retry_after=retry_after)


class NotFound(ProviderError):
    """The remote object (job, file, model) does not exist."""


class InvalidRequest(ProviderError):
    """The platform rejected the request; its message says why."""


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `retry-after` (seconds or an HTTP date), any header case."""
    lower = {str(k).lower(): v for k, v in (headers or {}).items()}
    with suppress(ValueError, TypeError):
        if millis := lower.get("retry-after-ms"):
            return float(millis) / 1000
    value = lower.get("retry-after")
    if value is None:
        return None
    with suppress(ValueError):
        return float(value)
    import datetime as dt  # here, not at start-up: every command imports this module, few see an HTTP date
    import email.utils

    with suppress(TypeError, ValueError):
        return max(0.0, (email.utils.parsedate_to_datetime(value) - dt.datetime.now(dt.UTC)).total_seconds())
    return None


def http_error(status: int, message: str, *, retry_after: float | None = None) -> ProviderError:
    """Translate an HTTP status into the error family; `retryable` comes from the status, never the text."""
    if status in (401, 403):
        return AuthError(message, status_code=status)
    if status == 429:
        return QuotaError(message, retry_after=retry_after)
    if status == 404:
        return NotFound(message, status_code=status)
    if status in (400, 409, 413, 415, 422):
        return InvalidRequest(message, status_code=status)
    return ProviderError(message, status_code=status, retryable=status >= 500 or status in (408, 425))
