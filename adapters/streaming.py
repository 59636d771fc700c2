"""One streaming core for every platform: a reply shown while the model writes it.

Slack streams deltas into a message or edits it; Teams streams the full text so far and cannot
edit it afterwards; a terminal only appends. What they share is written once, in `LiveStream`:

- appends are coalesced: the live message is updated at most once per `Sink.interval`, the
  first update as soon as there is text. An append that finds an update due shows it (the model
  waits for that one call); text appended in between is shown by the pump, one background task
  per reply, when the interval is over;
- a message that outgrows `Sink.limit`, or has been live for `Sink.max_seconds`, ends at a
  paragraph boundary (an open code block closed) and the rest goes on in a new message;
- when the platform refuses live streaming (`Refused`, or any failure to open), the fallback
  chain: native stream → post-and-edit, reconciled by the core through `Sink.post` / `edit` /
  `delete` (`adapters.posting`, as Vercel's Chat SDK does) where the sink can edit → plain
  posts at the end where it cannot;
- the end: the final text (what was streamed, when it is empty) is what the thread reads. Where
  it starts with what was shown only the rest is added; where it differs, a sink that can edit
  replaces the messages, one that cannot ends the live message with it, or posts it.

`BufferedStream` shows nothing until the end (slash commands, Teams group chats). The sinks live
with their platforms; `tests/test_reply_stream_contract.py` holds them all to one contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

from adapters.buffered import BufferedStream
from adapters.pacing import next_update, update_due
from adapters.posting import Posted, deliver, fitting_prefix, open_fence, remainder
from adapters.text import split_markdown
from bot.messages import AnswerInfo

log = logging.getLogger("threadwise.stream")

__all__ = ["BufferedStream", "LiveStream", "Refused", "Sink"]

FENCE_RESERVE = 32  # room (in the sink's length unit) to close an open code block at a cut


class Refused(Exception):
    """The platform will not stream this reply (any more): fall back to the next way."""


class Sink(Protocol):
    """How one platform shows one reply. Texts are Markdown; lengths are in `length` units.

    A native stream is `open` (a live message showing `text`, or a placeholder when `text` is
    ""), `update` (the full text of that message so far: it always extends what was shown, so a
    delta protocol sends `text[len(shown):]`) and `close` (the message's final text; `partial`
    when the reply goes on in another message). `post` sends a plain message and returns what
    `edit` / `delete` need. `end` runs once when the reply is over, with the error that stopped
    its last delivery (if any): release what the reply held, and raise to report the failure.
    Optional: `mark(answer, final)` before the end of a final model answer reading `final` (its
    last message gets the platform's marks), `seal(posted)` after, with that message (`Posted`).
    """

    limit: int  # the most one message holds
    interval: float  # seconds between updates of a live message
    edit_interval: float | None  # seconds between edits in post-and-edit; None: cannot edit
    open_wait: float | None  # open a placeholder after this long without text; None: never
    max_seconds: float | None  # how long one message may stay live; None: no bound
    # optional: min_update (characters) and hold (seconds), the pacing in adapters/pacing.py

    def length(self, text: str) -> int: ...

    async def open(self, text: str) -> Any: ...

    async def update(self, ref: Any, text: str) -> None: ...

    async def close(self, ref: Any, text: str, *, partial: bool) -> None: ...

    async def post(self, text: str) -> Any: ...

    async def edit(self, ref: Any, text: str) -> None: ...

    async def delete(self, ref: Any) -> None: ...

    async def end(self, error: Exception | None, *, shown: bool) -> None: ...


async def _wait(event: asyncio.Event, timeout: float | None) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), None if timeout is None else max(timeout, 0))


class LiveStream:
    """A reply shown while it is written, through `sink` (see the module docstring).

    `native=False` starts at the fallback (e.g. Slack remembers a channel that refused streams).
    """

    def __init__(self, sink: Sink, *, native: bool = True) -> None:
        self.sink = sink
        self.mode = "native" if native else "edit" if sink.edit_interval is not None else "plain"
        self.text = ""  # everything appended
        self.msgs: list[Posted] = []
        self.finished = False
        self._live: Posted | None = None  # the message a native stream is writing
        self._covered = 0  # how much of `text` the ended messages hold
        self._start = 0  # where the live message's text begins in `text`
        self._reopen = ""  # the fence line the next message opens with (a cut code block)
        self._seen = 0  # how much of `text` the reader has been shown
        self._dirty = False  # appended (or an update lost) since the last update
        self._last: float | None = None  # when the last update began
        self._cap_at: float | None = None  # when the live message must end
        self._lock = asyncio.Lock()  # one update at a time: the pump's, an append's, the end
        self._wake = asyncio.Event()
        self._finishing = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run()) if self.mode != "plain" else None

    @property
    def _interval(self) -> float:
        if self.mode == "native":
            return self.sink.interval
        return self.sink.edit_interval or 0.0

    # -- the ReplyStream protocol

    async def append(self, text: str) -> None:
        if self.finished or not text:
            return
        self.text += text
        self._dirty = True
        if self.mode == "plain":
            return
        async with self._lock:
            if update_due(self):
                await self._flush()  # the model waits while a due update goes out
            else:
                self._wake.set()  # the pump shows it when the interval is over

    async def finish(self, text: str, *, answer: AnswerInfo | None = None) -> None:
        """Make the thread read `text` (what was streamed, when `text` is blank)."""
        if self.finished:
            return
        self.finished = True
        self._finishing.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        final = text if text.strip() else self.text
        mark = getattr(self.sink, "mark", None) if answer is not None else None
        error: Exception | None = None
        try:
            async with self._lock:
                if mark is not None:
                    mark(answer, final)
                await self._settle(final)
                if mark is not None and self.msgs:
                    await self.sink.seal(self.msgs[-1])  # type: ignore[attr-defined]
        except Exception as exc:
            error = exc
        finally:
            await self.sink.end(error, shown=any(m.shown.strip() for m in self.msgs))

    async def end_with(self, text: str) -> bool:
        """End early because a message follows; True if `text` became this reply (none shown)."""
        if self.finished:
            return False
        if not self.text:
            await self.finish(text)
            return True
        try:
            await self.finish(self.text)
        except Exception as exc:
            log.debug("closing an unfinished reply failed: %s", type(exc).__name__)
        return False

    # -- the pump: one task per reply shows what was appended, paced

    async def _run(self) -> None:
        try:
            await self._pump()
        except Exception as exc:  # never let a reply crash the responder; finish() delivers it
            log.error("live reply stopped: %s", type(exc).__name__)
            self.mode = "plain"

    async def _pump(self) -> None:
        sink, loop = self.sink, self._loop
        if self.mode == "native" and sink.open_wait is not None:
            # The first words open the stream themselves; a model still silent after
            # `open_wait` gets a placeholder, and a reply finished by then is one plain post.
            if not self.text:
                await _wait(self._wake, sink.open_wait)
            async with self._lock:
                if not self.msgs and not self._finishing.is_set() and self.mode == "native":
                    self._last = loop.time()
                    await self._open("")
        while not self._finishing.is_set() and self.mode != "plain":
            now = loop.time()
            cap = self._cap_at
            if cap is not None and now >= cap:
                async with self._lock:
                    if self._cap_at is not None and not self._finishing.is_set():
                        if await self._cut(self._body()):
                            self._dirty = bool(self.text[self._covered :].strip())
                continue
            if not self._dirty:
                self._wake.clear()
                await _wait(self._wake, None if cap is None else cap - now)
                continue
            if not update_due(self):
                due = next_update(self)
                await _wait(self._finishing, (due if cap is None else min(due, cap)) - now)
                continue
            async with self._lock:
                if self._dirty and update_due(self) and not self._finishing.is_set():
                    await self._flush()

    async def _flush(self) -> None:
        self._dirty = False
        self._last = self._loop.time()
        if self.mode == "native":
            await self._show()
            if self.mode == "edit":  # refused just now: edits are paced from the first post
                self._last = self._loop.time()
        if self.mode == "edit":
            try:
                await deliver(self.sink, self.msgs, self.text)
            except Exception as exc:
                # The platform takes neither a stream nor an edit now: retrying for every chunk
                # would only add failures. finish() delivers the whole reply (or reports it).
                log.debug("live reply update failed: %s", type(exc).__name__)
                self.mode = "plain"

    # -- native streaming

    def _body(self) -> str:
        """What the live message should show now."""
        return self._reopen + self.text[self._start :]

    def _next_body(self) -> str | None:
        """What a new live message opens with (None: nothing to show yet); sets where it starts."""
        rest = self.text[self._covered :]
        self._start = self._covered
        if self._covered:
            stripped = rest.lstrip("\n") if self._reopen and rest.strip() else rest.lstrip()
            self._start += len(rest) - len(stripped)
            rest = stripped
        return self._reopen + rest if rest else None

    def _saw(self, body: str) -> None:
        self._seen = self._start + max(0, len(body) - len(self._reopen))

    def _fit(self, text: str, shown: str, *, whole: bool) -> tuple[str, str]:
        """(the start of `text` one message takes, that start with an open code block closed).

        All of `text` when `whole` and it fits; else the longest start that fits, cut between
        paragraphs, never shorter than what the message already shows.
        """
        sink = self.sink
        if whole and sink.length(text) <= sink.limit:
            return text, text
        head = fitting_prefix(text, sink.limit - FENCE_RESERVE, sink.length)
        if len(head) < len(shown) and text.startswith(shown):
            head = shown
        fence = open_fence(head)
        return head, head + "\n" + fence[1] if fence else head

    async def _open(self, text: str) -> bool:
        try:
            ref = await self.sink.open(text)
        except Exception as exc:  # Refused, or the platform failed: the same for the reader
            log.debug("live reply not opened: %s", type(exc).__name__)
            self._fall_back()
            return False
        self._live = Posted(ref, text)
        self.msgs.append(self._live)
        self._saw(text)
        seconds = self.sink.max_seconds
        self._cap_at = None if seconds is None else self._loop.time() + seconds
        return True

    async def _show(self) -> None:
        """Bring the live message up to date (one call), rolling over when it is full."""
        sink = self.sink
        room = sink.limit - FENCE_RESERVE
        body: str | None = None
        while self.mode == "native":
            if self._live is None:
                body = self._next_body()
                if body is None:
                    return
                first = fitting_prefix(body, room, sink.length)  # `body` itself when it fits
                if not await self._open(first) or first is body:
                    return
                continue  # the text did not fit: end this message and go on in the next
            if body is None:
                body = self._body()
            if sink.length(body) > room:
                if not await self._cut(body):
                    return
                body = None
                continue
            if body == self._live.shown:
                return
            try:
                await sink.update(self._live.ref, body)
            except Refused as exc:
                log.debug("live reply refused: %s", exc)
                self._fall_back()
                return
            except Exception as exc:
                log.debug("live update lost: %s", type(exc).__name__)
                self._dirty = True  # the next update, one interval on, carries the text
                return
            self._live.shown = body
            self._saw(body)
            return

    async def _cut(self, body: str) -> bool:
        """End the live message with what fits of `body`; the rest goes on in a new message."""
        live = self._live
        assert live is not None
        head, closing = self._fit(body, live.shown, whole=False)
        try:
            await self.sink.close(live.ref, closing, partial=True)
        except Exception as exc:
            log.debug("a full live message could not be ended: %s", type(exc).__name__)
            self._fall_back()
            return False
        live.shown = closing
        self._saw(head)
        self._covered = self._seen
        fence = open_fence(head)
        self._reopen = fence[0] if fence else ""
        self._live = self._cap_at = None
        return True

    def _fall_back(self) -> None:
        """Live streaming is over: post-and-edit where the sink can edit, else wait for the end."""
        self._live = self._cap_at = None
        self.mode = "edit" if self.sink.edit_interval is not None else "plain"

    # -- the end

    async def _settle(self, final: str) -> None:
        sink = self.sink
        can_edit = sink.edit_interval is not None
        live, self._live = self._live, None
        rest: str | None = None  # what a sink that cannot edit still has to post
        if live is not None:
            # The live message's part of the final text, if what came before it still stands.
            part = self._reopen + final[self._start :]
            if not final.startswith(self.text[: self._start]):
                part = None
            head, body = None, live.shown  # a sink that can edit replaces a changed text below
            if part is not None and (not can_edit or part.startswith(live.shown)):
                head, body = self._fit(part, live.shown, whole=True)
            try:
                await sink.close(live.ref, body, partial=False)
                live.shown = body
                if head is not None:
                    rest = remainder(part or "", head)
            except Exception as exc:
                log.debug("the live message could not be closed: %s", type(exc).__name__)
        if can_edit:
            if final.strip():
                await deliver(sink, self.msgs, final)
            return
        if rest is None:
            rest = remainder(final, self.text[: self._seen])
        for piece in split_markdown(rest, sink.limit, length=sink.length):
            self.msgs.append(Posted(await sink.post(piece), piece))
