"""The model's HTTP: one pooled aiohttp session, the chat-completions POST and its SSE stream.

Threadwise speaks the OpenAI chat-completions wire format itself rather than through the
`openai` SDK. The SDK builds an httpx request and response model around every call, even on its
aiohttp transport, and decodes SSE a line at a time in pure Python: measured against the same
fake model, a 25-chunk streamed reply cost 1.24 ms of CPU through the SDK and 0.50 ms here,
about a sixth of a whole turn's CPU (bench/README.md, bench 11). The part used is small and
stable — one POST, a JSON body, `data:` events ending in `[DONE]` — and the SDK stays in the
dev extras, where the tests check the fakes against it.

Failures leave here as `ModelError` (`bot.model_errors` names them): a status with its body and
headers, a broken connection by its aiohttp exception, an `error` event inside a 200 stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from bot.model_errors import ModelError, classify_error_event, classify_status, transport_error

log = logging.getLogger("threadwise.model")

MAX_ERROR_BODY = 64 * 1024  # read of an error response before it is classified

ApiKey = str | Callable[[], Awaitable[str]]


class ModelHTTP:
    """POSTs to `{base_url}chat/completions`; the session is made on first use (it needs a
    running loop) and shared by every call of the process."""

    def __init__(
        self, base_url: str, api_key: ApiKey, *, timeout: float, connect_timeout: float, pool: int
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = api_key
        # sock_read is the longest silence — before the first byte and between two pieces of a
        # stream (LLM_TIMEOUT_SECONDS); the whole reply has its own clock in the caller.
        self._timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, connect=connect_timeout, sock_read=timeout
        )
        self._pool = pool
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool),
                timeout=self._timeout,
                json_serialize=json.dumps,
                raise_for_status=False,
            )
        return self._session

    async def _headers(self, accept: str) -> dict[str, str]:
        key = self._api_key if isinstance(self._api_key, str) else await self._api_key()
        return {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": accept,
        }

    async def post(self, body: dict) -> dict:
        """A plain (not streamed) completion: the response's JSON object."""
        headers = await self._headers("application/json")
        log.debug("model request: POST %s", self.url)
        try:
            async with self._http().post(self.url, json=body, headers=headers) as resp:
                log.debug("model response: HTTP %s", resp.status)
                if resp.status >= 300:
                    raise await _status_error(resp)
                data = await resp.json(content_type=None)
        except ModelError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise transport_error(exc) from exc
        return data if isinstance(data, dict) else {}

    async def stream(self, body: dict) -> Events:
        """Open a streamed completion: its status is checked here, its events read from the
        returned `Events` (an async context manager and iterator of JSON objects)."""
        headers = await self._headers("text/event-stream")
        log.debug("model request: POST %s (streamed)", self.url)
        try:
            resp = await self._http().post(self.url, json=body, headers=headers)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise transport_error(exc) from exc
        log.debug("model response: HTTP %s", resp.status)
        if resp.status >= 300:
            try:
                raise await _status_error(resp)
            finally:
                resp.release()
        return Events(resp)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


async def _status_error(resp: aiohttp.ClientResponse) -> ModelError:
    try:
        raw = await resp.content.read(MAX_ERROR_BODY)
        body = json.loads(raw) if raw else None
    except (ValueError, aiohttp.ClientError, OSError, TimeoutError):
        body = None  # an HTML error page from a proxy, or a body cut off
    return classify_status(resp.status, resp.headers, body)


class Events:
    """The `data:` events of one SSE response, each decoded from JSON; `done` once the server
    sent `data: [DONE]`. Transport failures while reading raise their `transport_error`."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.done = False

    async def __aenter__(self) -> Events:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.done:
            self._resp.release()  # read to the end: the connection goes back to the pool
        else:
            self._resp.close()  # left early (the cap, the deadline, a failure): hang up

    def __aiter__(self) -> AsyncIterator[dict]:
        return self._events()

    async def _events(self) -> AsyncIterator[dict]:
        event, data = "", []
        content = self._resp.content
        while True:
            try:
                raw = await content.readline()
            except ValueError as exc:  # a line past the reader's buffer limit (128 KiB)
                raise ModelError("server_error", "stream line too long") from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise transport_error(exc) from exc
            if not raw:
                return  # the server closed the stream
            line = raw.rstrip(b"\r\n")
            if line:
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode("utf-8", "replace")
                continue  # comments (":") and other fields are ignored, as SSE says
            if not data:
                event = ""
                continue
            payload = b"\n".join(data)
            name, event, data = event, "", []
            if payload.startswith(b"[DONE]"):
                self.done = True
                return
            try:
                obj = json.loads(payload)
            except ValueError as exc:
                raise ModelError("server_error", "stream event is not JSON") from exc
            if isinstance(obj, dict) and (name == "error" or "error" in obj):
                raise classify_error_event(obj.get("error", obj))
            if isinstance(obj, dict):
                yield obj
