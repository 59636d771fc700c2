"""The terminal as a platform: `threadwise chat` streams replies to stdout."""

from __future__ import annotations

import getpass
import sys
import uuid
from typing import TextIO

from adapters.streaming import LiveStream, Refused
from bot.messages import IncomingMessage


class ConsoleSink:
    """The terminal for `LiveStream`: text is printed as it comes; nothing is ever taken back."""

    limit = sys.maxsize  # a terminal takes any length
    interval = 0.0  # every delta is printed at once
    edit_interval = None  # printed text stays: a different final text is printed after it
    open_wait = None
    max_seconds = None

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown = ""

    @staticmethod
    def length(text: str) -> int:
        return len(text)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    async def open(self, text: str) -> None:
        self._write(text)
        self.shown = text

    async def update(self, ref: None, text: str) -> None:
        self._write(text[len(self.shown) :])
        self.shown = text

    async def close(self, ref: None, text: str, *, partial: bool) -> None:
        # Print whatever the final text adds to what was streamed (a cut-off note, say).
        if text.startswith(self.shown):
            self._write(text[len(self.shown) :] + "\n")
        else:
            self._write(("\n" if self.shown else "") + text + "\n")
        self.shown = text

    async def post(self, text: str) -> None:
        self._write(text + "\n")

    async def edit(self, ref: None, text: str) -> None:
        raise Refused("the terminal does not edit")  # edit_interval None: never asked

    async def delete(self, ref: None) -> None:
        raise Refused("the terminal does not delete")

    async def end(self, error: Exception | None, *, shown: bool) -> None:
        if error is not None:
            raise error


class ConsoleReply:
    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._stream: LiveStream | None = None

    async def typing(self) -> None:
        return None

    async def send(self, text: str) -> None:
        if self._stream is not None and await self._stream.end_with(text):
            return
        self.out.write(text + "\n")
        self.out.flush()

    def stream(self) -> LiveStream:
        self._stream = LiveStream(ConsoleSink(self.out))
        return self._stream


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
