"""`BufferedStream`: a reply stream for places that cannot show a reply while it is written.

Slash-command answers and Teams group chats: the text is collected and posted once, at the end
(re-exported by `adapters.streaming`, where the live stream it stands beside is).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.messages import AnswerInfo

log = logging.getLogger("threadwise.stream")


class BufferedStream:
    """A stream for places that cannot show a reply while it is written: posted at `finish`."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        send_answer: Callable[[str, AnswerInfo], Awaitable[None]] | None = None,
    ) -> None:
        self._send = send
        self._send_answer = send_answer  # a final model answer, where the platform marks them
        self._parts: list[str] = []
        self.finished = False

    async def append(self, text: str) -> None:
        if not self.finished:
            self._parts.append(text)

    async def finish(self, text: str, *, answer: AnswerInfo | None = None) -> None:
        if self.finished:
            return
        self.finished = True
        final = text if text.strip() else "".join(self._parts)
        if final.strip() and answer is not None and self._send_answer is not None:
            await self._send_answer(final, answer)
        elif final.strip():
            await self._send(final)

    async def end_with(self, text: str) -> bool:
        """End early because a message follows; True if `text` became this reply."""
        if self.finished:
            return False
        if not "".join(self._parts).strip():
            await self.finish(text)
            return True
        try:
            await self.finish("")
        except Exception as exc:
            log.debug("posting an unfinished reply failed: %s", type(exc).__name__)
        return False
