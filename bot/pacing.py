"""One model-call limiter per process: it shrinks on 429, grows back, and makes turns queue.

Why not the SDK's retries: each waiting request retried on its own after Retry-After, all at
the same instant, so a deployment that admits two requests per window admitted the same two
every window and the rest ran out of retries (8 answers, 22 apologies for 30 mentions against
2 requests per 10 s). Here every model call of the process goes through one `ModelPacer`:

- **AIMD.** At most `limit` calls are in flight. A 429 halves it (from the calls actually in
  flight, at most once per congestion episode: the 429s of calls that were already on the wire
  count as one) and pauses new calls until the server's Retry-After, plus a little jitter so
  that replicas do not return at one instant. Each success adds `1/limit` (about one call per
  round), back up to `MODEL_MAX_CONCURRENCY`.
- **Queue.** Calls wait their turn in arrival order; a call that got a 429 keeps its place
  (its turn arrived first), so nothing starves. A turn waits at most `LLM_WAIT_SECONDS` for a
  call to start, counting every retry: past that it gets the rate-limited apology.
- **Retries.** 429 is retried while the wait allows (however many times); `server_error`,
  `unreachable` and `empty_stream` up to `LLM_MAX_RETRIES` times, with full-jitter exponential
  backoff (or Retry-After when the server sent one). A timeout is never re-sent: the model may
  still be working on it, and asking again would make it start over.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from bot.model_errors import RETRIED, ModelError

log = logging.getLogger("threadwise.llm")

T = TypeVar("T")

BACKOFF_BASE = 0.5  # seconds; the n-th retry waits uniform(0, min(BACKOFF_CAP, base * 2**n))
BACKOFF_CAP = 8.0
RATE_LIMIT_DEFAULT = 2.0  # a 429 without Retry-After: pause this long, doubling per 429 in a row
JITTER = 0.1  # pauses after a 429 are stretched by up to 10% (at most JITTER_CAP seconds)
JITTER_CAP = 1.0
STATUS_REFRESH_SECONDS = 30.0  # how often a waiting turn re-shows "is thinking…"


class ModelPacer:
    """The per-process AIMD limiter of model calls (see the module docstring)."""

    def __init__(
        self,
        ceiling: int,
        *,
        max_retries: int = 3,
        rng: Callable[[], float] = random.random,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.max_retries = max_retries
        self.in_flight = 0
        self.paused_until = 0.0
        self._rng = rng
        self._on_retry = on_retry
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._episode = 0.0  # when the current decrease happened
        self._rate_limited_in_a_row = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- admission

    @property
    def waiting(self) -> int:
        return sum(1 for _, fut in self._waiters if not fut.done())

    @property
    def throttled(self) -> bool:
        return self.limit < self.ceiling or time.monotonic() < self.paused_until

    def _may_start(self) -> bool:
        return self.in_flight < max(1, int(self.limit)) and time.monotonic() >= self.paused_until

    def _wake(self) -> None:
        self._timer = None
        while self._waiters and self._may_start():
            _, fut = heapq.heappop(self._waiters)
            if fut.done():
                continue
            self.in_flight += 1
            fut.set_result(None)
        if self._waiters and time.monotonic() < self.paused_until and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(
                loop.time() + (self.paused_until - time.monotonic()), self._wake
            )

    async def _acquire(self, seq: int, deadline: float) -> None:
        """Wait for a call slot in arrival order (`seq`); ModelError past `deadline`."""
        if not self._waiters and self._may_start():
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (seq, fut))
        self._wake()
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0 and not fut.done():
                raise TimeoutError
            await asyncio.wait_for(asyncio.shield(fut), remaining)
        except TimeoutError:
            if fut.done() and not fut.cancelled():
                self._release()  # admitted at the very moment the wait ran out
            fut.cancel()
            raise self._gave_up("waited too long for a turn") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._release()
            fut.cancel()
            raise

    def _release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._wake()

    def _gave_up(self, detail: str) -> ModelError:
        kind = "rate_limited" if self.throttled else "timeout"
        return ModelError(kind, detail)

    # -- outcomes

    def _succeeded(self) -> None:
        self._rate_limited_in_a_row = 0
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)

    def _rate_limited(self, started: float, retry_after: float | None) -> None:
        now = time.monotonic()
        if started >= self._episode:
            # One decrease per episode: calls already on the wire when it began add nothing.
            self.limit = max(1.0, min(self.limit, float(self.in_flight)) / 2)
            self._episode = now
            self._rate_limited_in_a_row += 1
        pause = (
            retry_after
            if retry_after is not None
            else RATE_LIMIT_DEFAULT * 2 ** min(self._rate_limited_in_a_row - 1, 5)
        )
        pause += min(JITTER_CAP, pause * JITTER) * self._rng()
        self.paused_until = max(self.paused_until, now + pause)

    def backoff(self, retry: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return self._rng() * min(BACKOFF_CAP, BACKOFF_BASE * 2**retry)

    # -- one model call, retried

    async def run(self, attempt: Callable[[], Awaitable[T]], *, deadline: float) -> T:
        """Run `attempt` under the limiter, retrying what retrying can fix, until `deadline`
        (the last moment an attempt may start)."""
        seq = next(self._seq)
        retries = 0
        while True:
            await self._acquire(seq, deadline)
            started = time.monotonic()
            try:
                result = await attempt()
            except ModelError as err:
                if err.kind == "rate_limited":
                    self._rate_limited(started, err.retry_after)
                self._release()
                if err.kind not in RETRIED:
                    raise
                if err.kind == "rate_limited":
                    if self.paused_until >= deadline:
                        raise ModelError(
                            "rate_limited", f"{err.detail}; the wait would pass LLM_WAIT_SECONDS"
                        ) from err
                    self._note_retry(err, self.paused_until - time.monotonic())
                    continue  # back in the queue, in the place its arrival gave it
                retries += 1
                if retries > self.max_retries:
                    raise
                delay = self.backoff(retries - 1, err.retry_after)
                if time.monotonic() + delay >= deadline:
                    raise
                self._note_retry(err, delay)
                await asyncio.sleep(delay)
                continue
            except BaseException:
                self._release()
                raise
            self._succeeded()
            self._release()
            return result

    def _note_retry(self, err: ModelError, wait: float) -> None:
        log.debug(
            "model call retried",
            extra={
                "kind": err.kind,
                "detail": err.detail,
                "wait_seconds": round(max(wait, 0.0), 3),
                "limit": round(self.limit, 2),
                "in_flight": self.in_flight,
                "queued": len(self._waiters),
            },
        )
        if self._on_retry is not None:
            self._on_retry(err.kind)


@contextlib.asynccontextmanager
async def status_kept(
    show: Callable[[], Awaitable[None]], every: float | None = None
) -> AsyncIterator[Callable[[], None]]:
    """Show the working status now and again every `every` seconds until `stop()` is called
    (the first text arrived) or the block ends.

    Slack clears an assistant status after two minutes without a message, Teams' typing
    indicator after a few seconds: a turn waiting for its turn at a rate-limited model must not
    look abandoned. The adapters decide how often a refresh really reaches the platform.
    """
    stopped = asyncio.Event()
    every = every or STATUS_REFRESH_SECONDS
    # The first one before the model is asked, so it can never land after the first words.
    with contextlib.suppress(Exception):
        await show()

    async def refresh() -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopped.wait(), every)
            if stopped.is_set():
                return
            with contextlib.suppress(Exception):
                await show()

    task = asyncio.get_running_loop().create_task(refresh())
    try:
        yield stopped.set
    finally:
        stopped.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
