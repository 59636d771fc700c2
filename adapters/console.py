"""The terminal as a platform: `threadwise chat` streams replies to stdout."""

from __future__ import annotations

import getpass
import sys
import uuid
from typing import TextIO

from bot.messages import IncomingMessage


class ConsoleStream:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown = ""

    async def append(self, text: str) -> None:
        self.shown += text
        self.out.write(text)
        self.out.flush()

    async def finish(self, text: str) -> None:
        # Print whatever the final text adds to what was streamed (a cut-off note, say).
        if text.startswith(self.shown):
            self.out.write(text[len(self.shown) :])
        else:
            self.out.write(("\n" if self.shown else "") + text)
        self.out.write("\n")
        self.out.flush()


class ConsoleReply:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def typing(self) -> None:
        return None

    async def send(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def stream(self) -> ConsoleStream:
        return ConsoleStream(self.out)


class Console:
    """Builds messages for one console thread; the console user is the OS user."""

    def __init__(self, thread: str = "default", out: TextIO | None = None) -> None:
        self.thread = thread
        self.user = getpass.getuser()
        self.out = out or sys.stdout
        self._n = 0
        self._session = uuid.uuid4().hex

    def message(self, text: str) -> IncomingMessage:
        self._n += 1
        return IncomingMessage(
            platform="console",
            workspace="local",
            channel=self.thread,
            thread=None,
            user_id=self.user,
            user_name=self.user,
            text=text,
            message_id=f"{self._session}-{self._n}",
            is_dm=True,
            mentions_bot=True,
        )

    def reply(self) -> ConsoleReply:
        return ConsoleReply(self.out)
