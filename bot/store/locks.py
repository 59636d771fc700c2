"""Conversation locks: a held turn, the in-process FIFO, and renewing a lease while held."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("threadwise.store")


@dataclass(slots=True)
class Turn:
    """A held conversation lock; renewed in the background until released."""

    conversation: str
    token: str
    waited: float = 0.0
    released: bool = False
    renewer: asyncio.Task[None] | None = None
    local_held: bool = False


class FifoLocks:
    """Per-key FIFO locks within one process, dropped when nobody uses them (bounded memory).

    asyncio.Lock wakes waiters in arrival order; Redis connections do not preserve the order
    of commands sent by different tasks, so the local queue is what keeps one process's
    messages of a conversation in arrival order.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, key: str, max_wait: float) -> None:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            await asyncio.wait_for(lock.acquire(), max_wait)
        except BaseException:
            self._unref(key)
            raise

    def release(self, key: str) -> None:
        lock, _ = self._locks[key]
        lock.release()
        self._unref(key)

    def _unref(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


Renew = Callable[[Turn], Awaitable[bool]]


def start_renewal(turn: Turn, lease: float, renew: Renew) -> None:
    """Keep `turn`'s lease alive (renewed every third of it) until `stop_renewal`."""
    turn.renewer = asyncio.create_task(_renew_loop(turn, lease, renew))


def stop_renewal(turn: Turn) -> None:
    turn.released = True
    if turn.renewer is not None and turn.renewer is not asyncio.current_task():
        turn.renewer.cancel()


async def _renew_loop(turn: Turn, lease: float, renew: Renew) -> None:
    while not turn.released:
        await asyncio.sleep(lease / 3)
        if turn.released:
            return
        try:
            if not await renew(turn):
                log.warning("lock lost", extra={"conversation": turn.conversation})
                return
        except Exception:  # a blip; the lease outlives two missed renewals
            log.warning("lock renewal failed", extra={"conversation": turn.conversation})
