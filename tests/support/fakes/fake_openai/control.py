"""A client for the ``/_fake/*`` control routes of a FakeOpenAI running in another process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from tests.support.fakes.fake_openai.behaviours import (
    Behaviour,
    EmptyStream,
    Error,
    Hang,
    Reply,
    StreamDies,
    _behaviour_to_dict,
)


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
