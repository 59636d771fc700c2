"""Arrival-ordered admission of the work a turn does before the model: first come, first served.

All turns share one event loop. Without a gate, a burst's turns interleave at every await — each
counts its tokens, then each loads its history, then each fits its prompt — so none reaches the
model until nearly all have done their part (a burst of 100 mentions: every model request about
300 ms after its mention, the first as late as the last). With at most `width` turns in that
stretch at once, admitted in the order they asked, the earliest messages reach the model first
and a turn's wait grows with its place in the queue, not with the size of the burst.

A turn holds its place from `enter()` until `leave()` (just before the model is called) or the
end of its task, whichever comes first, so a turn that fails or returns early never keeps a
place. Entering again from a task that holds a place is a no-op.
"""

from __future__ import annotations

import asyncio
from collections import deque

ADMISSION_WIDTH = 16  # turns doing pre-model work at once; the rest wait in arrival order


class Admission:
    def __init__(self, width: int = ADMISSION_WIDTH) -> None:
        self._free = width
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._holders: set[asyncio.Task[object]] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def enter(self) -> None:
        """Wait for a place, after every turn that asked before."""
        task = asyncio.current_task()
        if task is None or task in self._holders:
            return
        if self._free > 0 and not self._waiting:
            self._free -= 1
        else:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(fut)
            try:
                await fut  # a place handed over by leave()
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled():
                    self._pass_on()  # handed over just as the turn was cancelled
                else:
                    self._waiting.remove(fut)
                raise
        self._holders.add(task)
        task.add_done_callback(self._task_done)

    def leave(self) -> None:
        """Give the current task's place to the next turn in line (no-op if it holds none)."""
        task = asyncio.current_task()
        if task is not None and task in self._holders:
            self._holders.discard(task)
            task.remove_done_callback(self._task_done)
            self._pass_on()

    def _task_done(self, task: asyncio.Task[object]) -> None:
        if task in self._holders:
            self._holders.discard(task)
            self._pass_on()

    def _pass_on(self) -> None:
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self._free += 1
