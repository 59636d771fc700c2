"""The model: Azure OpenAI's v1 endpoint (or any OpenAI-compatible one) through `openai`.

Retries are the SDK's own: it retries 408/409/429/5xx and timeouts with exponential backoff
and honours `retry-after-ms` / `Retry-After` (openai `_base_client._calculate_retry_timeout`),
which is docs/spec.md §4 exactly; we set only `max_retries` and `timeout`. What we add is the
mapping of outcomes (finish_reason, Azure's content filter, context length) onto what the user sees.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import openai

log = logging.getLogger("threadwise.llm")

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"


class ModelError(Exception):
    """The model call failed for good; `kind` says why (for metrics and the user's message)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind  # content_filter | context_length | timeout | unavailable | bad_request


@dataclass(slots=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_seconds: float | None = None


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    err = body.get("error", body) if isinstance(body, dict) else {}
    code = getattr(exc, "code", None) or (err.get("code") if isinstance(err, dict) else None)
    inner = err.get("innererror", {}) if isinstance(err, dict) else {}
    if isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation":
        return "content_filter"
    return str(code) if code else None


def classify(exc: BaseException) -> ModelError:
    """Turn an `openai` exception into the kinds docs/spec.md §4 distinguishes."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ModelError("timeout", "the model did not answer in time")
    if isinstance(exc, openai.BadRequestError):
        code = _error_code(exc)
        message = str(getattr(exc, "message", "")) or ""
        if code == "content_filter":
            return ModelError("content_filter", "prompt filtered")
        if code == "context_length_exceeded" or "maximum context length" in message:
            return ModelError("context_length", message[:200])
        return ModelError("bad_request", f"{code or 400}")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ModelError("auth", f"HTTP {exc.status_code}")
    if isinstance(exc, openai.NotFoundError):
        return ModelError("not_found", "deployment not found")
    if isinstance(exc, openai.APIStatusError):
        return ModelError("unavailable", f"HTTP {exc.status_code}")
    if isinstance(exc, openai.APIConnectionError):
        return ModelError("unavailable", "connection failed")
    return ModelError("unavailable", type(exc).__name__)


class LLMClient:
    """Streams chat completions; one instance per process, sharing the HTTP connection pool."""

    def __init__(
        self,
        *,
        base_url: str,
        deployment: str,
        api_key: str | Callable[[], Awaitable[str]],
        max_response_tokens: int,
        temperature: float | None,
        max_retries: int,
        timeout: float,
        close_hook: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.deployment = deployment
        self.max_response_tokens = max_response_tokens
        self.temperature = temperature
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key,
            max_retries=max_retries,
            timeout=timeout,
            # The SDK's aiohttp transport: httpx's connection pool scans every connection for
            # each request, a cost that grows with the replies streaming at once.
            http_client=openai.DefaultAioHttpClient(),
        )
        self._close_hook = close_hook

    def _params(self, messages: list[dict[str, str]], max_tokens: int | None) -> dict:
        params: dict = {
            "model": self.deployment,
            "messages": messages,
            "max_completion_tokens": max_tokens or self.max_response_tokens,
        }
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params

    async def stream(
        self,
        messages: list[dict[str, str]],
        on_delta: Callable[[str], Awaitable[None]],
        *,
        max_tokens: int | None = None,
    ) -> Completion:
        """Stream a reply, calling `on_delta` for each piece; raises `ModelError` on failure.

        A stream that breaks after text has been shown is not retried (the user already saw
        it); `ModelError("interrupted")` carries no partial text — the caller has it.
        """
        started = time.monotonic()
        parts: list[str] = []
        finish: str | None = None
        usage: dict | None = None
        first: float | None = None
        try:
            # The SDK's own request (auth, retries, errors, SSE decoding), but chunks stay the
            # JSON dicts they arrive as: a pydantic ChatCompletionChunk per token would be most
            # of a turn's CPU.
            stream = await self.client.post(
                "/chat/completions",
                body={
                    **self._params(messages, max_tokens),
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
                cast_to=object,
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            async with stream:
                async for chunk in stream:
                    if not isinstance(chunk, dict):
                        continue
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        delta = (choice.get("delta") or {}).get("content")
                        if delta:
                            if first is None:
                                first = time.monotonic() - started
                            parts.append(delta)
                            await on_delta(delta)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except openai.APIError as exc:
            err = classify(exc)
            if parts and err.kind in ("unavailable", "timeout"):
                raise ModelError("interrupted", err.kind) from exc
            raise err from exc
        except (OSError, ValueError) as exc:  # a connection torn mid-stream
            raise ModelError("interrupted" if parts else "unavailable", type(exc).__name__) from exc
        if finish is None and parts:
            raise ModelError("interrupted", "stream ended without finish_reason")
        return Completion(
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens") if usage else None,
            completion_tokens=usage.get("completion_tokens") if usage else None,
            first_token_seconds=first,
        )

    async def ping(self) -> str:
        """One-token call for `doctor`: proves endpoint, auth and deployment together."""
        try:
            resp = await self.client.with_options(max_retries=0).chat.completions.create(
                **self._params([{"role": "user", "content": "ping"}], 1)
            )
        except openai.APIError as exc:
            raise classify(exc) from exc
        return resp.model or self.deployment

    async def close(self) -> None:
        await self.client.close()
        if self._close_hook is not None:
            await self._close_hook()


def make_llm(settings) -> LLMClient:
    """Key auth when a key is set, else Entra ID (DefaultAzureCredential, optional UAMI)."""
    settings.require_model()
    close_hook = None
    if settings.azure_openai_api_key is not None:
        api_key: str | Callable[[], Awaitable[str]] = (
            settings.azure_openai_api_key.get_secret_value()
        )
    else:
        from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

        credential = DefaultAzureCredential(managed_identity_client_id=settings.azure_client_id)
        api_key = get_bearer_token_provider(credential, ENTRA_SCOPE)
        close_hook = credential.close
    return LLMClient(
        base_url=settings.model_base_url,
        deployment=settings.azure_openai_deployment,
        api_key=api_key,
        max_response_tokens=settings.max_response_tokens,
        temperature=settings.temperature,
        max_retries=settings.llm_max_retries,
        timeout=settings.llm_timeout_seconds,
        close_hook=close_hook,
    )
