"""The model: Azure OpenAI's v1 endpoint (or any OpenAI-compatible one), chat completions.

`bot.model_http` makes the request (auth, error bodies, SSE decoding; why not the `openai` SDK
is written there). Retries go through the process's one `bot.pacing.ModelPacer`, which paces
429s for every turn at once, jitters, and never re-sends a request the model may still be
working on (a timeout). What a failure means is `bot.model_errors`.

Two clocks bound a call (docs/spec.md §4): `LLM_TIMEOUT_SECONDS`, the longest the model may be
silent — before its first byte and between two pieces of a stream (the transport's read
timeout); and `LLM_REPLY_DEADLINE_SECONDS`, the whole reply from the moment the request is
sent: past it the stream is closed and the text so far is the reply, with a note.

The reply cap is enforced here as well as sent: deltas are counted as they arrive and the
stream is closed once they reach `MAX_RESPONSE_TOKENS` (some servers ignore the field).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.model_errors import ModelError, classify, credentials_unavailable
from bot.model_http import ModelHTTP
from bot.pacing import ModelPacer

log = logging.getLogger("threadwise.llm")

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
# Chunks read past the cap before the stream is closed: a server that honours the cap sends its
# finish_reason and usage right after its last token, and its count may differ from ours a bit.
CAP_GRACE_CHUNKS = 8
CONNECT_TIMEOUT = 10.0  # seconds to open a connection (never more than LLM_TIMEOUT_SECONDS)
# Hosts that read `max_completion_tokens` (and whose reasoning models reject `max_tokens`).
_COMPLETION_TOKENS_HOSTS = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
    "api.openai.com",
)

__all__ = ["Completion", "LLMClient", "ModelError", "cap_field_for", "classify", "make_llm"]


def cap_field_for(base_url: str | None, setting: str = "auto") -> str:
    """The request field carrying the reply cap (docs/spec.md §4).

    Azure OpenAI and OpenAI read `max_completion_tokens` (their reasoning models refuse
    `max_tokens`); other OpenAI-compatible servers (llama.cpp, Ollama, older vLLM) read only
    `max_tokens`, which every one of them has supported since the start. `LLM_CAP_FIELD` picks
    one explicitly, e.g. for a proxy in front of Azure at a host of its own.
    """
    if setting != "auto":
        return setting
    host = (urlsplit(base_url or "").hostname or "").lower()
    if any(host == h.lstrip(".") or host.endswith(h) for h in _COMPLETION_TOKENS_HOSTS):
        return "max_completion_tokens"
    return "max_tokens"


@dataclass(slots=True)
class Completion:
    """One reply. `finish_reason` is the server's, or ours: `length` when our count reached
    the cap, `deadline` when `LLM_REPLY_DEADLINE_SECONDS` passed; usage is None when the
    server reported none."""

    text: str
    finish_reason: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_seconds: float | None = None


@dataclass(slots=True)
class Probe:
    """`doctor`'s one-token call: the model that answered and how many tokens it generated."""

    model: str
    completion_tokens: int


class LLMClient:
    """Streams chat completions; one instance per process, sharing the HTTP connection pool
    and the model-call limiter."""

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
        reply_deadline: float = 300.0,
        wait_seconds: float = 180.0,
        max_concurrency: int = 256,
        cap_field: str = "auto",
        count: Callable[[str], int] | None = None,
        on_retry: Callable[[str], None] | None = None,
        close_hook: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.deployment = deployment
        self.max_response_tokens = max_response_tokens
        self.temperature = temperature
        self.timeout = timeout
        self.reply_deadline = reply_deadline
        self.wait_seconds = wait_seconds
        self.cap_field = cap_field_for(base_url, cap_field)
        # Tokens of one delta (the process's tokenizer); a delta counts one without it.
        self._count = count or (lambda _text: 1)
        self.pacer = ModelPacer(max_concurrency, max_retries=max_retries, on_retry=on_retry)
        self.http = ModelHTTP(
            base_url,
            api_key,
            timeout=timeout,
            connect_timeout=min(CONNECT_TIMEOUT, timeout),
            pool=max_concurrency,  # the pacer never lets more calls out at once
        )
        self._close_hook = close_hook

    def _params(
        self, messages: list[dict[str, str]], max_tokens: int | None, model: str | None = None
    ) -> dict:
        params: dict = {
            "model": model or self.deployment,
            "messages": messages,
            self.cap_field: max_tokens or self.max_response_tokens,
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
        wait_until: float | None = None,
    ) -> Completion:
        """Stream a reply, calling `on_delta` for each piece; raises `ModelError` on failure.

        Waits for its turn at the limiter (at most `LLM_WAIT_SECONDS`, retries included, or
        until `wait_until`, a `time.monotonic()` shared by the calls of one turn). A stream that
        breaks after text has been shown is not retried (the user already saw it);
        `ModelError("interrupted")` carries no partial text — the caller has it.
        """
        deadline = wait_until or time.monotonic() + self.wait_seconds
        cap = max_tokens or self.max_response_tokens
        return await self.pacer.run(
            lambda: self._attempt(messages, on_delta, cap), deadline=deadline
        )

    async def _attempt(
        self, messages: list[dict[str, str]], on_delta: Callable[[str], Awaitable[None]], cap: int
    ) -> Completion:
        started = time.monotonic()
        parts: list[str] = []
        finish: str | None = None
        usage: dict | None = None
        first: float | None = None
        counted = 0
        over = 0
        done = False
        try:
            async with asyncio.timeout(self.reply_deadline) as clock:
                stream = await self.http.stream(
                    {
                        **self._params(messages, cap),
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    }
                )
                async with stream:
                    async for chunk in stream:
                        if chunk.get("usage"):
                            usage = chunk["usage"]
                        for choice in chunk.get("choices") or ():
                            delta_obj = choice.get("delta") or {}
                            delta = delta_obj.get("content")
                            if delta and counted >= cap:
                                over += 1  # past the cap: not shown, only waited out a little
                            elif delta:
                                if first is None:
                                    first = time.monotonic() - started
                                parts.append(delta)
                                counted += self._count(delta)
                                await on_delta(delta)
                            # Azure's API simulator puts finish_reason inside the delta.
                            reason = choice.get("finish_reason") or delta_obj.get("finish_reason")
                            if reason:
                                finish = reason
                        if over > CAP_GRACE_CHUNKS and finish is None:
                            finish = "length"  # the server ignores the cap: we stop reading
                            break
                    done = stream.done
        except ModelError as err:
            if parts and err.kind in ("unreachable", "timeout", "server_error"):
                raise ModelError("interrupted", err.kind) from err
            raise
        except TimeoutError as exc:
            if not clock.expired():
                raise ModelError("timeout", "no answer in time") from exc
            if not parts:
                raise ModelError("timeout", "no reply within LLM_REPLY_DEADLINE_SECONDS") from None
            finish = "deadline"
        except (OSError, ValueError) as exc:  # a connection torn mid-stream
            if parts:
                raise ModelError("interrupted", type(exc).__name__) from exc
            raise ModelError("server_error", type(exc).__name__) from exc
        except Exception as exc:
            if credentials_unavailable(exc):  # Entra ID chosen, no identity to sign in with
                raise classify(exc) from exc
            raise
        if finish is None:
            if done:
                finish = "stop"  # [DONE] ends a complete reply, finish_reason or not
            elif parts:
                raise ModelError("interrupted", "stream ended without finish_reason or [DONE]")
            else:
                return await self._explain_empty(messages, on_delta, cap, started)
        return Completion(
            text="".join(parts),
            finish_reason=finish,
            prompt_tokens=usage.get("prompt_tokens") if usage else None,
            completion_tokens=usage.get("completion_tokens") if usage else None,
            first_token_seconds=first,
        )

    async def _explain_empty(
        self,
        messages: list[dict[str, str]],
        on_delta: Callable[[str], Awaitable[None]],
        cap: int,
        started: float,
    ) -> Completion:
        """A 200 stream with no events and no [DONE] (llama.cpp's server when the prompt
        overflows its context): ask once without streaming, which answers with the error —
        or with the reply itself, which is then shown whole."""
        log.info("stream ended without events; asking again without streaming")
        remaining = self.reply_deadline - (time.monotonic() - started)
        if remaining <= 0:
            raise ModelError("empty_stream", "no time left to ask without streaming")
        try:
            async with asyncio.timeout(remaining):
                resp = await self.http.post(self._params(messages, cap))
        except TimeoutError:
            raise ModelError("empty_stream", "the plain request did not answer in time") from None
        except ModelError as err:
            if err.kind == "timeout":
                raise ModelError("empty_stream", "the plain request timed out") from err
            raise
        choice = _first_choice(resp)
        text = ((choice.get("message") or {}).get("content")) or ""
        usage = resp.get("usage")
        if text:
            await on_delta(text)
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=usage.get("prompt_tokens") if usage else None,
            completion_tokens=usage.get("completion_tokens") if usage else None,
            first_token_seconds=time.monotonic() - started if text else None,
        )

    async def probe(self, model: str | None = None) -> Probe:
        """One-token call for `doctor`: proves endpoint, auth and deployment together (and,
        with another `model`, whether the server checks model names at all)."""
        try:
            resp = await self.http.post(
                self._params([{"role": "user", "content": "ping"}], 1, model)
            )
        except Exception as exc:
            raise classify(exc) from exc
        usage = resp.get("usage")
        generated = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if generated is None:
            content = (_first_choice(resp).get("message") or {}).get("content") or ""
            generated = self._count(content) if content else 0
        return Probe(str(resp.get("model") or model or self.deployment), generated)

    async def ping(self) -> str:
        return (await self.probe()).model

    async def close(self) -> None:
        await self.http.close()
        if self._close_hook is not None:
            await self._close_hook()


def _first_choice(resp: dict) -> dict:
    choices = resp.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else {}
    return first if isinstance(first, dict) else {}


def make_llm(settings, *, count: Callable[[str], int] | None = None, on_retry=None) -> LLMClient:
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
        reply_deadline=settings.llm_reply_deadline_seconds,
        wait_seconds=settings.llm_wait_seconds,
        max_concurrency=settings.model_max_concurrency,
        cap_field=settings.llm_cap_field,
        count=count,
        on_retry=on_retry,
        close_hook=close_hook,
    )
