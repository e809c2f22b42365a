"""Azure OpenAI / Microsoft Foundry fine-tuning: the OpenAI adapter on Azure's endpoint.

Two wire styles: the v1 API (`{endpoint}/openai/v1/`, the default) and the dated one
(`{endpoint}/openai/...?api-version=`, chosen by OPENAI_API_VERSION or `api_version`). Credentials:
AZURE_OPENAI_API_KEY, else AZURE_OPENAI_AD_TOKEN, else Entra ID through azure-identity when installed.
What differs from OpenAI: `trainingType`, the suffix rules, files must be processed before training,
and a fine-tuned model must be deployed before it answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import openai
from pydantic import BaseModel, field_validator

from finetune_hub.cost import azure_training_type_name
from finetune_hub.errors import AuthError, ConfigError, ProviderError
from finetune_hub.job import Backoff
from finetune_hub.records import Problem
from providers.openai import OpenAIJob, OpenAISettings, public_url

#: the deployment SKU that matches each training type
DEPLOYMENT_SKUS = {"Standard": "standard", "GlobalStandard": "globalstandard", "Developer": "developertier"}
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
SUFFIX_MAX = 18


class AzureOpenAISettings(OpenAISettings):
    """The `providers: {azure_openai: {...}}` block of a spec."""

    training_type: Literal["Standard", "GlobalStandard", "Developer"] | None = None
    api_version: str | None = None  # a dated API version selects the dated path style

    @field_validator("training_type", mode="before")
    @classmethod
    def _normalise(cls, value: Any) -> Any:
        """Azure's docs spell it "globalstandard", "developerTier", "GlobalStandard": accept any case."""
        return azure_training_type_name(value) if isinstance(value, str) else value


class AzureOpenAIJob(OpenAIJob):
    provider: ClassVar[str] = "azure_openai"
    settings_model: ClassVar[type[BaseModel] | None] = AzureOpenAISettings
    settings: AzureOpenAISettings
    answers_through_deployments = True
    #: seconds between checks while Azure processes an uploaded file
    processing_poll_s: float = 2.0  # first wait between file-status checks; it grows to 30 s
    processing_timeout_s: float = 1800.0

    @staticmethod
    def _endpoint() -> str:
        """The resource URL; Azure's v1 samples give the API's base URL (…/openai/v1/), which means the same."""
        endpoint = os.environ.get("AZURE_OPENAI_ENDPOINT", "").rstrip("/")
        if not (endpoint := endpoint.removesuffix("/openai/v1").removesuffix("/openai")):
            raise ConfigError(
                "AZURE_OPENAI_ENDPOINT is not set: no Azure OpenAI resource to send the job to",
                hint="export AZURE_OPENAI_ENDPOINT=https://<resource>.openai.azure.com",
            )
        return endpoint

    def connect(self) -> Any:
        endpoint = self._endpoint()
        key = os.environ.get("AZURE_OPENAI_API_KEY")
        token = os.environ.get("AZURE_OPENAI_AD_TOKEN")
        provider = None if key or token else _entra_token_provider()
        api_version = self.settings.api_version or os.environ.get("OPENAI_API_VERSION")
        common: dict[str, Any] = {"max_retries": 0, "timeout": self.settings.request_timeout}
        if api_version:
            return openai.AzureOpenAI(
                azure_endpoint=endpoint,
                api_version=api_version,
                api_key=key,
                azure_ad_token=None if key else token,
                azure_ad_token_provider=provider,
                **common,
            )
        # The v1 API takes the key, a token or a token provider as the bearer credential.
        return openai.OpenAI(base_url=f"{endpoint}/openai/v1/", api_key=key or token or provider, **common)

    def account_id(self) -> str:
        """The resource's endpoint: both path styles reach the same files."""
        return public_url(self.client.base_url).removesuffix("/v1")

    def check(self) -> list[Problem]:
        problems = super().check()
        if self._client is None:  # a dry run says what submit will
            try:
                self._endpoint()
            except ConfigError as exc:
                problems.append(Problem("error", exc.message, exc.hint))
        suffix = self.spec.suffix
        if suffix and self.fitted_suffix(suffix) != suffix:
            problems.append(
                Problem(
                    "error",
                    f"suffix {suffix!r}: Azure takes at most {SUFFIX_MAX} characters and no '.'",
                    hint="shorten the suffix in the spec, e.g. " + repr(self.fitted_suffix(suffix)),
                )
            )
        return problems

    @classmethod
    def fitted_suffix(cls, suffix: str) -> str:
        return suffix.replace(".", "-")[:SUFFIX_MAX]

    def _create_params(self, prepared: Any, idempotency_key: str) -> dict[str, Any]:
        params = super()._create_params(prepared, idempotency_key)
        if self.settings.training_type:
            params["extra_body"] = {"trainingType": self.settings.training_type}
        return params

    def _wait_until_processed(self, file_id: str) -> None:
        """Azure refuses a job whose files it has not finished importing."""
        backoff = Backoff(initial=self.processing_poll_s, factor=1.5, maximum=30.0)
        deadline = time.monotonic() + self.processing_timeout_s
        while True:
            found = self.retrying(lambda: self._retrieve_file(file_id))
            if found.status == "processed":
                return
            if found.status == "error":
                raise ProviderError(f"Azure could not import {file_id}: {found.status_details or 'no details'}")
            if time.monotonic() >= deadline:
                raise ProviderError(
                    f"Azure is still importing {file_id} ({found.status}) after {self.processing_timeout_s:.0f} s",
                    hint="submit again later: the upload is remembered and not repeated",
                )
            self.retry_sleep(backoff.next())

    def _deployment_hint(self, job: Any) -> str | None:
        if not job.fine_tuned_model:
            return None
        sku = DEPLOYMENT_SKUS[self.settings.training_type or "Standard"]
        return (
            f"deploy {job.fine_tuned_model} (or one of its checkpoints) before inference: "
            "az cognitiveservices account deployment create --resource-group <rg> --name <resource> "
            f"--deployment-name <name> --model-name {job.fine_tuned_model} --model-version 1 "
            f"--model-format OpenAI --sku-name {sku} --sku-capacity 1; then predict with model=<name>"
        )


def _entra_token_provider() -> Callable[[], str]:
    """Entra ID (DefaultAzureCredential) bearer tokens, when azure-identity is installed."""
    try:
        from azure.identity import DefaultAzureCredential, get_bearer_token_provider
    except ImportError:
        raise AuthError(
            "no Azure OpenAI credentials found",
            hint="set AZURE_OPENAI_API_KEY or AZURE_OPENAI_AD_TOKEN, or `pip install azure-identity` for Entra ID",
        ) from None
    return get_bearer_token_provider(DefaultAzureCredential(), ENTRA_SCOPE)  # type: ignore[no-any-return]
