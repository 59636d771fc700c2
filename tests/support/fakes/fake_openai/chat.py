"""The fake's ``/chat/completions`` handler: scripted behaviours, the knobs that shape a reply
(pacing, caps, limits, context window), and the JSON and streamed (SSE) wire formats."""

from __future__ import annotations

import asyncio
import inspect
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from tests.support.fakes.fake_openai.behaviours import (
    Behaviour,
    EmptyStream,
    Error,
    Hang,
    Reply,
    StreamDies,
    context_length_exceeded,
    rate_limited,
)
from tests.support.fakes.fake_openai.plumbing import RequestPlumbing
from tests.support.fakes.fake_openai.tokens import (
    _encoding,
    _text_size,
    count_prompt_tokens,
    count_tokens,
)
from tests.support.fakes.fake_openai.wire import (
    DEFAULT_MODEL,
    _content_text,
    _drop,
    _dumps,
    _filter_results,
    _last_user_text,
    _usage,
    split_chunks,
)
from tests.support.fakes.fake_openai_limits import RateWindow, digits_in, inflated

ReplyFn = Callable[[list[dict[str, Any]]], "str | Awaitable[str]"]


class ChatCompletions(RequestPlumbing):
    """Answers chat requests from the queued behaviours and the knobs of :class:`FakeOpenAI`."""

    reply: str | None
    reply_fn: ReplyFn | None
    delay: float
    first_token_delay: float
    tokens_per_second: float | None
    model: str | None
    azure: bool
    context_window: int | None
    honor_max_tokens: bool
    reads_cap: tuple[str, ...]
    stream_usage: bool
    finish_in_delta: bool
    prompt_token_scale: float
    digit_weight: float
    overflow_as_empty_stream: bool
    rate_window: RateWindow | None
    deployments: tuple[str, ...] | None
    queue: deque[Behaviour]

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
