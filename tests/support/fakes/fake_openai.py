"""A local fake of the Azure OpenAI v1 Chat Completions API, speaking the real wire format.

Used through the real ``openai.AsyncOpenAI(base_url=fake.base_url, api_key=...)`` client::

    async with FakeOpenAI(reply="hi") as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        fake.script(rate_limited(retry_after=1), Reply("second try"))
        ...
        assert fake.last_messages()[0] == {"role": "system", "content": "..."}

Standalone (for end-to-end tests and benchmarks)::

    python -m tests.support.fakes.fake_openai --port 0 --tokens-per-second 50
    # prints "READY http://127.0.0.1:PORT/openai/v1/" once listening

and scripted over HTTP: ``POST /_fake/script`` (JSON list of behaviours, see
:func:`behaviour_from_dict`), ``GET /_fake/requests``, ``POST /_fake/reset``,
``POST /_fake/config``. :class:`FakeOpenAIControl` is a small client for those routes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import inspect
import json
import math
import os
import re
import signal
import sys
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# tiktoken must work offline: point it at the BPE files shipped with the bot before it loads any.
os.environ.setdefault(
    "TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[3] / "bot" / "tokenizer_data")
)

import aiohttp
import tiktoken
from aiohttp import web
from multidict import CIMultiDict

from tests.support.fakes.fake_openai_limits import RateWindow, digits_in, inflated

__all__ = [
    "Behaviour",
    "EmptyStream",
    "Error",
    "FakeOpenAI",
    "FakeOpenAIControl",
    "Hang",
    "RecordedRequest",
    "Reply",
    "StreamDies",
    "behaviour_from_dict",
    "context_length_exceeded",
    "count_prompt_tokens",
    "count_tokens",
    "invalid_unicode",
    "prompt_content_filter",
    "rate_limited",
    "server_error",
]

ENCODING_NAME = "o200k_base"
DEFAULT_MODEL = "gpt-4o"
API_PREFIX = "/openai/v1"
CONTENT_FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_JSON_SEPARATORS = (",", ":")


# --------------------------------------------------------------------------- tokens


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in o200k_base (special-token text is counted as ordinary text)."""
    return len(_encoding().encode_ordinary(text)) if text else 0


def _value_tokens(value: Any) -> int:
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, Mapping):
        return sum(_value_tokens(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_value_tokens(v) for v in value)
    return 0


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """The OpenAI cookbook formula for gpt-4o-style models.

    3 tokens per message, plus the tokens of every string value (string leaves of structured
    values such as content parts are counted too), plus 1 per ``name``, plus 3 priming the reply.
    """
    total = 0
    for message in messages:
        total += 3
        for key, value in message.items():
            total += _value_tokens(value)
            if key == "name":
                total += 1
    return total + 3


def _text_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_text_size(v) for v in value)
    return 0


# --------------------------------------------------------------------------- behaviours


@dataclass
class Reply:
    """Answer with ``text`` (``None``: the default reply) and ``finish_reason``.

    ``usage`` overrides the computed usage fields (e.g. ``{"prompt_tokens": 10}``).
    """

    text: str | None = None
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None


@dataclass
class Error:
    """Answer with HTTP ``status``, JSON ``body`` (a dict, or raw text) and extra ``headers``."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Sleep ``seconds`` before answering (then the default behaviour); for client timeouts."""

    seconds: float


@dataclass
class StreamDies:
    """Stream ``after_chunks`` content chunks, then drop the connection without ``[DONE]``.

    On a non-streaming request the connection is dropped before any response is sent.
    """

    after_chunks: int = 1
    text: str | None = None


@dataclass
class EmptyStream:
    """A streaming request answered HTTP 200 with no events and no ``[DONE]`` (llama.cpp's
    OpenAI server when the prompt overflows its context); a non-streaming one as usual.

    Script the error the server would give the request without streaming after it, e.g.
    ``fake.script(EmptyStream(), context_length_exceeded(2048, 2100))``."""


Behaviour = Reply | Error | Hang | StreamDies | EmptyStream


def rate_limited(
    retry_after: float | None = 1, retry_after_ms: float | None = None, *, kind: str = "token"
) -> Error:
    """Azure's 429 with ``Retry-After`` (and optionally ``retry-after-ms``)."""
    seconds = retry_after if retry_after is not None else (retry_after_ms or 0) / 1000
    wait = max(1, math.ceil(seconds))
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        f"2024-10-21 have exceeded {kind} rate limit of your current AIServices S0 pricing tier. "
        f"Please retry after {wait} second{'s' if wait != 1 else ''}. Please go here: "
        "https://aka.ms/oai/quotaincrease if you would like to further increase the default "
        "rate limit."
    )
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = _num(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = _num(retry_after_ms)
    headers["x-ratelimit-remaining-requests"] = "0"
    headers["x-ratelimit-remaining-tokens"] = "0"
    return Error(429, {"error": {"code": "429", "message": message}}, headers)


def server_error(message: str | None = None) -> Error:
    """A plain 500 as the API sends it."""
    return Error(
        500,
        {
            "error": {
                "message": message
                or ("The server had an error while processing your request. Sorry about that!"),
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )


def invalid_unicode(*, azure: bool = True) -> Error:
    """The 500 sent when the model produced invalid (non-UTF-8) output.

    Azure: "The model produced invalid content..."; OpenAI (``azure=False``): "...generated
    invalid Unicode output...".
    """
    if azure:
        message = (
            "The model produced invalid content. Consider modifying your prompt if you are "
            "seeing this error persistently."
        )
        return Error(
            500,
            {"error": {"message": message, "type": "model_error", "param": None, "code": None}},
        )
    message = (
        "Failed to create completion as the model generated invalid Unicode output. "
        "Unfortunately, this can happen in rare situations. Consider reviewing your prompt or "
        "reducing the temperature of your request. You can retry your request, or contact us "
        "through our help center at help.openai.com if the error persists."
    )
    return Error(
        500, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    )


def _filter_results(
    filtered: Iterable[str] = (), severity: str = "medium", *, jailbreak: bool = False
) -> dict[str, Any]:
    flagged = set(filtered)
    results: dict[str, Any] = {}
    for category in CONTENT_FILTER_CATEGORIES:
        hit = category in flagged
        results[category] = {"filtered": hit, "severity": severity if hit else "safe"}
    return results | ({"jailbreak": {"filtered": jailbreak, "detected": jailbreak}})


def prompt_content_filter(
    category: str = "violence", severity: str = "medium", *, jailbreak: bool = False
) -> Error:
    """Azure's 400 when the prompt trips the content filter (``code == "content_filter"``).

    ``category="jailbreak"`` (or ``jailbreak=True``) flags the prompt shield instead.
    """
    jailbreak = jailbreak or category == "jailbreak"
    categories = () if category == "jailbreak" else (category,)
    results = _filter_results(categories, severity, jailbreak=jailbreak)
    ordered = {key: results[key] for key in sorted(results)}
    return Error(
        400,
        {
            "error": {
                "message": (
                    "The response was filtered due to the prompt triggering Azure OpenAI's "
                    "content management policy. Please modify your prompt and retry. To learn "
                    "more about our content filtering policies please read our documentation: "
                    "https://go.microsoft.com/fwlink/?linkid=2198766"
                ),
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": ordered,
                },
            }
        },
    )


def context_length_exceeded(max_context: int = 128000, requested: int | None = None) -> Error:
    """The 400 ``context_length_exceeded`` error."""
    requested = requested if requested is not None else max_context + 1
    return Error(
        400,
        {
            "error": {
                "message": (
                    f"This model's maximum context length is {max_context} tokens. However, your "
                    f"messages resulted in {requested} tokens. Please reduce the length of the "
                    "messages."
                ),
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_BEHAVIOUR_TYPES: dict[str, Callable[..., Behaviour]] = {
    "reply": Reply,
    "error": Error,
    "hang": Hang,
    "stream_dies": StreamDies,
    "empty_stream": EmptyStream,
    "rate_limited": rate_limited,
    "server_error": server_error,
    "invalid_unicode": invalid_unicode,
    "prompt_content_filter": prompt_content_filter,
    "context_length_exceeded": context_length_exceeded,
}


def behaviour_from_dict(spec: Mapping[str, Any] | Behaviour) -> Behaviour:
    """Build a behaviour from its JSON form: ``{"type": NAME, **arguments}``.

    NAME is one of reply, error, hang, stream_dies, rate_limited, server_error,
    invalid_unicode, prompt_content_filter, context_length_exceeded; the other keys are the
    keyword arguments of the class or constructor of the same name (e.g.
    ``{"type": "rate_limited", "retry_after": 1, "retry_after_ms": 250}``).
    """
    if isinstance(spec, Reply | Error | Hang | StreamDies | EmptyStream):
        return spec
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"a behaviour needs a 'type': {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        factory = _BEHAVIOUR_TYPES[spec["type"]]
    except KeyError:
        raise ValueError(
            f"unknown behaviour type {spec['type']!r}; known: {sorted(_BEHAVIOUR_TYPES)}"
        ) from None
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for {spec['type']!r}: {exc}") from None


def _behaviour_to_dict(behaviour: Behaviour) -> dict[str, Any]:
    names = {
        Reply: "reply",
        Error: "error",
        Hang: "hang",
        StreamDies: "stream_dies",
        EmptyStream: "empty_stream",
    }
    return {"type": names[type(behaviour)], **behaviour.__dict__}


# --------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request the fake received (control routes are not recorded)."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: Any
    received_at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]] | None:
        return self.body.get("messages") if isinstance(self.body, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": self.body,
            "received_at": self.received_at,
        }


# --------------------------------------------------------------------------- helpers


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


def _last_user_text(messages: list[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


_WORDISH = re.compile(r"\s*\S{1,12}|\s+")


def split_chunks(text: str) -> list[str]:
    """Split a reply into small word-ish stream chunks; ``"".join(...)`` gives ``text`` back."""
    return _WORDISH.findall(text)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=_JSON_SEPARATORS)


# --------------------------------------------------------------------------- the server


ReplyFn = Callable[[list[dict[str, Any]]], "str | Awaitable[str]"]


class FakeOpenAI:
    """An aiohttp server on 127.0.0.1 speaking Azure OpenAI's v1 Chat Completions wire format.

    Knobs (constructor keyword arguments and settable attributes):

    - ``reply``: fixed reply text; ``reply_fn(messages) -> str`` (may be async) wins over it;
      default ``"Echo: " + <content of the last user message>``.
    - ``delay``: seconds before the response (headers / first byte).
    - ``first_token_delay``: seconds between the stream's role chunk and its first content
      chunk (non-streaming responses wait it too).
    - ``tokens_per_second``: stream pacing, one word-ish chunk each 1/R s (non-streaming
      responses wait the same generation time). ``None``: as fast as possible.
    - ``model``: the model name reported in responses (default: the request's ``model``).
    - ``azure``: emulate Azure's extras (the first stream chunk with empty ``choices`` and
      ``prompt_filter_results``; ``content_filter_results`` per choice). Default True.
    - ``api_key``: when set, requests must carry ``Authorization: Bearer <key>`` or
      ``api-key: <key>``, else Azure's 401.
    - ``context_window``: when set, prompts above it get ``context_length_exceeded``.
    - ``honor_max_tokens``: truncate replies to ``max_completion_tokens``/``max_tokens`` with
      ``finish_reason: "length"`` (default True); ``reads_cap`` names the fields read (llama.cpp
      reads only ``("max_tokens",)``).
    - ``stream_usage``: send the usage chunk when asked (``False``: never, as llama.cpp).
    - ``finish_in_delta``: put ``finish_reason`` inside the last chunk's ``delta`` (Azure's API
      simulator) instead of on the choice.
    - ``prompt_token_scale`` / ``digit_weight``: the server's tokenizer counts more than
      tiktoken (reported usage and the ``context_window`` check use its count).
    - ``overflow_as_empty_stream``: a streamed prompt over ``context_window`` gets HTTP 200 with
      no events and no ``[DONE]`` (the non-streamed one still gets the 400).
    - ``deployments``: when set, a request for any other ``model`` gets Azure's 404
      ``DeploymentNotFound`` (default: every name is answered, as many local servers do).
    - ``rate_window``: a :class:`RateWindow` (requests / tokens per window): over it, a 429
      with the window's remaining time as ``Retry-After``.
    """

    def __init__(
        self,
        *,
        reply: str | None = None,
        reply_fn: ReplyFn | None = None,
        delay: float = 0.0,
        first_token_delay: float = 0.0,
        tokens_per_second: float | None = None,
        model: str | None = None,
        azure: bool = True,
        api_key: str | None = None,
        context_window: int | None = None,
        honor_max_tokens: bool = True,
        reads_cap: tuple[str, ...] = ("max_completion_tokens", "max_tokens"),
        stream_usage: bool = True,
        finish_in_delta: bool = False,
        prompt_token_scale: float = 1.0,
        digit_weight: float = 1.0,
        overflow_as_empty_stream: bool = False,
        rate_window: RateWindow | None = None,
        deployments: tuple[str, ...] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.reply = reply
        self.reply_fn = reply_fn
        self.delay = delay
        self.first_token_delay = first_token_delay
        self.tokens_per_second = tokens_per_second
        self.model = model
        self.azure = azure
        self.api_key = api_key
        self.context_window = context_window
        self.honor_max_tokens = honor_max_tokens
        self.reads_cap = reads_cap
        self.stream_usage = stream_usage
        self.finish_in_delta = finish_in_delta
        self.prompt_token_scale = prompt_token_scale
        self.digit_weight = digit_weight
        self.overflow_as_empty_stream = overflow_as_empty_stream
        self.rate_window = rate_window
        self.deployments = deployments
        self.host = host
        self._requested_port = port
        self.requests: list[RecordedRequest] = []
        self.queue: deque[Behaviour] = deque()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._active: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> FakeOpenAI:
        if self._runner is not None:
            return self
        await asyncio.to_thread(_encoding)  # load the BPE file off the event loop, once
        app = web.Application(middlewares=[self._track], client_max_size=64 * 1024 * 1024)
        for prefix in (API_PREFIX, "/v1"):
            app.router.add_post(f"{prefix}/chat/completions", self._chat)
            app.router.add_get(f"{prefix}/models", self._models)
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_post("/_fake/script", self._control_script)
        app.router.add_get("/_fake/requests", self._control_requests)
        app.router.add_post("/_fake/reset", self._control_reset)
        app.router.add_post("/_fake/config", self._control_config)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self._requested_port)
        await site.start()
        server = site._server
        assert server is not None and getattr(server, "sockets", None)
        self._port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runner = runner
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        for task in list(self._active):
            task.cancel()
        await runner.cleanup()

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ----------------------------------------------------------------- addresses

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/openai/v1/``, Azure's v1 shape, for ``AsyncOpenAI``."""
        return f"{self.url}{API_PREFIX}/"

    # ----------------------------------------------------------------- scripting / inspection

    def script(self, *behaviours: Behaviour | Mapping[str, Any]) -> None:
        """Queue behaviours (objects or their dict form), consumed one per chat request."""
        self.queue.extend(behaviour_from_dict(b) for b in behaviours)

    def reset(self) -> None:
        """Forget recorded requests and queued behaviours (knobs are kept)."""
        self.requests.clear()
        self.queue.clear()

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def last_messages(self) -> list[dict[str, Any]]:
        """The ``messages`` array of the last chat request."""
        for request in reversed(self.requests):
            if request.messages is not None:
                return request.messages
        raise LookupError("FakeOpenAI has received no chat request")

    def configure(self, **knobs: Any) -> None:
        """Set knobs by name (the keyword arguments of the constructor, except host/port)."""
        allowed = {
            "reply",
            "delay",
            "first_token_delay",
            "tokens_per_second",
            "model",
            "azure",
            "api_key",
            "context_window",
            "honor_max_tokens",
            "reads_cap",
            "stream_usage",
            "finish_in_delta",
            "prompt_token_scale",
            "digit_weight",
            "overflow_as_empty_stream",
            "deployments",
        }
        unknown = set(knobs) - allowed
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; known: {sorted(allowed)}")
        for name, value in knobs.items():
            setattr(self, name, value)

    # ----------------------------------------------------------------- HTTP plumbing

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self._active.add(task)
        try:
            return await handler(request)
        finally:
            if task is not None:
                self._active.discard(task)

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        recorded = RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    def _response_headers(self) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        return {"x-request-id": request_id, "apim-request-id": request_id, "x-ms-region": "local"}

    def _error_response(self, error: Error) -> web.Response:
        headers = self._response_headers() | dict(error.headers)
        if isinstance(error.body, str | bytes):
            raw = error.body.encode() if isinstance(error.body, str) else error.body
            return web.Response(
                status=error.status,
                body=raw,
                headers=headers,
                content_type="application/json",
            )
        return web.json_response(error.body, status=error.status, headers=headers, dumps=_dumps)

    def _auth_error(self, recorded: RecordedRequest) -> Error | None:
        if self.api_key is None:
            return None
        headers = recorded.headers
        if headers.get("api-key") == self.api_key:
            return None
        if headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return Error(
            401,
            {
                "error": {
                    "code": "401",
                    "message": (
                        "Access denied due to invalid subscription key or wrong API endpoint. "
                        "Make sure to provide a valid key for an active subscription and use a "
                        "correct regional API endpoint for your resource."
                    ),
                }
            },
        )

    async def _models(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if (error := self._auth_error(recorded)) is not None:
            return self._error_response(error)
        model = {
            "id": self.model or DEFAULT_MODEL,
            "object": "model",
            "created": 1715367049,
            "owned_by": "system",
        }
        return web.json_response(
            {"object": "list", "data": [model]}, headers=self._response_headers()
        )

    # ----------------------------------------------------------------- chat completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        recorded = await self._record(request)
        body = recorded.body
        if (error := self._auth_error(recorded)) is not None:
            return self._error_response(error)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._error_response(
                Error(
                    400,
                    {
                        "error": {
                            "message": "'messages' is a required property",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": None,
                        }
                    },
                )
            )
        messages: list[dict[str, Any]] = body["messages"]
        if self.deployments is not None and body.get("model") not in self.deployments:
            return self._error_response(
                Error(
                    404,
                    {
                        "error": {
                            "code": "DeploymentNotFound",
                            "message": "The API deployment for this resource does not exist.",
                        }
                    },
                )
            )
        stream = bool(body.get("stream"))
        behaviour = self.queue.popleft() if self.queue else None

        if isinstance(behaviour, Hang):
            await asyncio.sleep(behaviour.seconds)
            behaviour = None
        await self._sleep_until(started + self.delay)

        if isinstance(behaviour, Error):
            return self._error_response(behaviour)
        if isinstance(behaviour, StreamDies) and not stream:
            _drop(request)
            return web.Response()

        if _text_size(messages) > 20_000:
            prompt_tokens = await asyncio.to_thread(count_prompt_tokens, messages)
        else:
            prompt_tokens = count_prompt_tokens(messages)
        if self.prompt_token_scale != 1.0 or self.digit_weight != 1.0:
            digits = sum(digits_in(_content_text(m.get("content"))) for m in messages)
            prompt_tokens = inflated(
                prompt_tokens, digits, self.prompt_token_scale, self.digit_weight
            )
        limit = next((body[f] for f in self.reads_cap if body.get(f)), None)
        if self.rate_window is not None:
            cost = prompt_tokens + (limit if isinstance(limit, int) else 0)
            if (wait := self.rate_window.admit(cost)) is not None:
                return self._error_response(
                    rate_limited(math.ceil(wait), retry_after_ms=round(wait * 1000))
                )
        if isinstance(behaviour, EmptyStream) and stream:
            return await self._empty_stream(request)
        if self.context_window is not None and prompt_tokens > self.context_window:
            if stream and self.overflow_as_empty_stream:
                return await self._empty_stream(request)
            return self._error_response(context_length_exceeded(self.context_window, prompt_tokens))

        finish_reason = "stop"
        usage_override: dict[str, int] | None = None
        text: str | None = None
        if isinstance(behaviour, Reply):
            text, finish_reason, usage_override = (
                behaviour.text,
                behaviour.finish_reason,
                behaviour.usage,
            )
        elif isinstance(behaviour, StreamDies):
            text = behaviour.text
        if text is None:
            text = await self._default_text(messages)

        completion_tokens = count_tokens(text)
        if (
            self.honor_max_tokens
            and finish_reason == "stop"
            and isinstance(limit, int)
            and 0 < limit < completion_tokens
        ):
            text = _encoding().decode(_encoding().encode_ordinary(text)[:limit])
            completion_tokens, finish_reason = limit, "length"

        usage = _usage(prompt_tokens, completion_tokens) | (usage_override or {})
        if usage_override:
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = self.model or body.get("model") or request.match_info.get("deployment")
        model = model or DEFAULT_MODEL
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        chunks = split_chunks(text)

        if not stream:
            generation = len(chunks) / self.tokens_per_second if self.tokens_per_second else 0.0
            await asyncio.sleep(max(0.0, self.first_token_delay) + generation)
            return web.json_response(
                self._completion(completion_id, model, text, finish_reason, usage),
                headers=self._response_headers(),
                dumps=_dumps,
            )

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        include_usage = include_usage and self.stream_usage
        dies_after = behaviour.after_chunks if isinstance(behaviour, StreamDies) else None
        return await self._stream(
            request,
            completion_id,
            model,
            chunks,
            finish_reason,
            usage if include_usage else None,
            dies_after,
        )

    async def _default_text(self, messages: list[dict[str, Any]]) -> str:
        if self.reply_fn is not None:
            result = self.reply_fn(messages)
            if inspect.isawaitable(result):
                result = await result
            return str(result)
        if self.reply is not None:
            return self.reply
        return "Echo: " + _last_user_text(messages)

    @staticmethod
    async def _sleep_until(deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)

    def _completion(
        self, completion_id: str, model: str, text: str, finish_reason: str, usage: dict[str, Any]
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        result: dict[str, Any] = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
        if self.azure:
            filtered = ("violence",) if finish_reason == "content_filter" else ()
            choice["content_filter_results"] = _filter_results(filtered)
            result["prompt_filter_results"] = [
                {"prompt_index": 0, "content_filter_results": _filter_results()}
            ]
        return result

    async def _stream(
        self,
        request: web.Request,
        completion_id: str,
        model: str,
        chunks: list[str],
        finish_reason: str,
        usage: dict[str, Any] | None,
        dies_after: int | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._response_headers(),
            },
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        created = int(time.time())

        async def send(obj: Any) -> None:
            payload = obj if isinstance(obj, str) else _dumps(obj)
            await response.write(f"data: {payload}\n\n".encode())

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }
            if self.azure:
                choice["content_filter_results"] = extra.pop("filter_results", {})
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [choice],
            }
            if usage is not None:
                data["usage"] = None
            return data

        if self.azure:
            await send(
                {
                    "choices": [],
                    "created": 0,
                    "id": "",
                    "model": "",
                    "object": "",
                    "prompt_filter_results": [
                        {"prompt_index": 0, "content_filter_results": _filter_results()}
                    ],
                }
            )
        await send(chunk({"role": "assistant", "content": "", "refusal": None}))
        if self.first_token_delay > 0:
            await asyncio.sleep(self.first_token_delay)

        first_at = time.monotonic()
        for index, piece in enumerate(chunks):
            if dies_after is not None and index >= dies_after:
                break
            if self.tokens_per_second:
                await self._sleep_until(first_at + index / self.tokens_per_second)
            await send(chunk({"content": piece}))
        if dies_after is not None:
            _drop(request)
            return response

        filtered = ("violence",) if finish_reason == "content_filter" else ()
        if self.finish_in_delta:
            last = chunk({"finish_reason": finish_reason}, filter_results=_filter_results(filtered))
            del last["choices"][0]["finish_reason"]
            await send(last)
        else:
            await send(chunk({}, finish_reason, filter_results=_filter_results(filtered)))
        if usage is not None:
            await send(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [],
                    "usage": usage,
                }
            )
        await send("[DONE]")
        await response.write_eof()
        return response

    async def _empty_stream(self, request: web.Request) -> web.StreamResponse:
        """HTTP 200, an event-stream content type, then the body ends: no event, no [DONE]."""
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                **self._response_headers(),
            },
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write_eof()
        return response

    # ----------------------------------------------------------------- control routes

    async def _control_script(self, request: web.Request) -> web.Response:
        try:
            specs = await request.json()
            if isinstance(specs, dict):
                specs = [specs]
            if not isinstance(specs, list):
                raise ValueError("expected a JSON list of behaviours")
            behaviours = [behaviour_from_dict(spec) for spec in specs]
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.queue.extend(behaviours)
        return web.json_response({"queued": len(self.queue)})

    async def _control_requests(self, request: web.Request) -> web.Response:
        return web.json_response([r.to_dict() for r in self.requests], dumps=_dumps)

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_config(self, request: web.Request) -> web.Response:
        try:
            knobs = await request.json()
            if not isinstance(knobs, dict):
                raise ValueError("expected a JSON object of knobs")
            self.configure(**knobs)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _drop(request: web.Request) -> None:
    """Close the connection mid-response: buffered bytes are flushed, the body never ends."""
    transport = request.transport
    if transport is not None:
        transport.close()


# --------------------------------------------------------------------------- remote control


class FakeOpenAIControl:
    """Client for the control routes of a FakeOpenAI running in another process.

    ``url`` may be the root (``http://127.0.0.1:PORT``) or the ``base_url``.
    """

    def __init__(self, url: str) -> None:
        self.url = url.split("/openai/")[0].rstrip("/")

    async def _call(self, method: str, path: str, payload: Any = None) -> Any:
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, json=payload) as response,
        ):
            data = await response.json()
            if response.status != 200:
                raise ValueError(f"{path}: {response.status} {data}")
            return data

    async def script(self, *behaviours: Behaviour | Mapping[str, Any]) -> int:
        specs = [
            _behaviour_to_dict(b)
            if isinstance(b, Reply | Error | Hang | StreamDies | EmptyStream)
            else dict(b)
            for b in behaviours
        ]
        return (await self._call("POST", "/_fake/script", specs))["queued"]

    async def requests(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/_fake/requests")

    async def reset(self) -> None:
        await self._call("POST", "/_fake/reset")

    async def configure(self, **knobs: Any) -> None:
        await self._call("POST", "/_fake/config", knobs)


# --------------------------------------------------------------------------- standalone


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fakes.fake_openai",
        description="Fake Azure OpenAI v1 Chat Completions server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--reply", default=None, help="fixed reply (default: echo)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--api-key", default=None, help="require this key")
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--no-azure", action="store_true", help="plain OpenAI shapes")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(
        reply=args.reply,
        delay=args.delay,
        first_token_delay=args.first_token_delay,
        tokens_per_second=args.tokens_per_second,
        model=args.model,
        azure=not args.no_azure,
        api_key=args.api_key,
        context_window=args.context_window,
        host=args.host,
        port=args.port,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    async with fake:
        print(f"READY {fake.base_url}", flush=True)
        await stopping.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))
    sys.exit(0)


if __name__ == "__main__":
    main()
