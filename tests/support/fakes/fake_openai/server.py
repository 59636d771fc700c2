"""The fake's aiohttp server: its knobs, lifecycle and addresses, scripting and inspection, the
models route and the ``/_fake/*`` control routes (chat requests are answered by
:class:`ChatCompletions`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from tests.support.fakes.fake_openai.behaviours import Behaviour, behaviour_from_dict
from tests.support.fakes.fake_openai.chat import ChatCompletions, ReplyFn
from tests.support.fakes.fake_openai.tokens import _encoding
from tests.support.fakes.fake_openai.wire import DEFAULT_MODEL, RecordedRequest, _dumps
from tests.support.fakes.fake_openai_limits import RateWindow

API_PREFIX = "/openai/v1"


class FakeOpenAI(ChatCompletions):
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
