"""The core's side, for adapter tests that must not depend on the real responder.

`MemoryCache` is the `Cache` protocol in a dict; `RecordingHandler` is a `MessageHandler` that
records what the adapter submits and can run a scripted reply for each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any


class MemoryCache:
    """The `Cache` protocol in a dict (TTL recorded, not enforced)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ttls: dict[str, int] = {}
        self.gets = 0

    async def cache_get(self, key: str) -> str | None:
        self.gets += 1
        return self.data.get(key)

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        self.data[key] = value
        self.ttls[key] = ttl_seconds


class RecordingHandler:
    """A `MessageHandler` that records submissions and can run a scripted reply for each.

    `script(message, reply)` is an async function, e.g. one that calls `reply.typing()`, opens
    `reply.stream()`, appends and finishes. `wait_for(n)` waits for n submissions (and their
    scripts to finish).
    """

    def __init__(self, script: Callable[[Any, Any], Any] | None = None):
        self.script = script
        self.submitted: list[tuple[Any, Any]] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.errors: list[BaseException] = []
        self._changed = asyncio.Event()

    @property
    def messages(self) -> list[Any]:
        return [m for m, _ in self.submitted]

    def submit(self, message: Any, reply: Any) -> None:
        self.submitted.append((message, reply))
        if self.script is not None:
            self.tasks.append(asyncio.get_running_loop().create_task(self.handle(message, reply)))
        self._changed.set()

    async def handle(self, message: Any, reply: Any) -> None:
        if self.script is None:
            return
        try:
            await self.script(message, reply)
        except Exception as e:  # recorded for the test to inspect
            self.errors.append(e)

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.submitted) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.submitted)} of {n} messages submitted")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
        if self.tasks:
            await asyncio.wait_for(asyncio.gather(*self.tasks), timeout)
        return self.messages
