"""Teams' streaming protocol as a sink for the streaming core (`adapters.streaming`).

Streaming (1:1 chats only; Teams rejects it elsewhere) follows Microsoft's protocol: a first
`typing` activity with `streaminfo` (`streamSequence: 1`; `streamType: streaming` carrying the
model's first words, or `informative` while the model is slow to start) whose response id becomes
the `streamId`; then `typing` chunks each holding the full text so far, `streamSequence`
increasing, at most one a second; then a `message` with `streamType: final`, which may replace
the text. The core ends the stream before Teams' 2-minute cap or when the text outgrows one
message; Teams takes one stream per reply, so the rest follows as ordinary messages. A 403
ContentStreamNotAllowed (the user pressed Stop, the stream expired) refuses the stream: what
was not shown is posted as an ordinary message.

The SDK's `StreamingResponse` speaks the same protocol but is tied to a live TurnContext and
does not retry 429s, loses the remainder after a 403, cannot replace the text at the end, and has
no 2-minute or size cut-over; the core and this sink add those and otherwise mirror it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from microsoft_agents.activity import Activity, StreamInfo
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.streaming import Refused
from adapters.teams.connector import ConnectorError, StreamRejected
from adapters.teams.feedback import mark_answer
from adapters.text import split_markdown, utf16_length
from bot.messages import AnswerInfo

if TYPE_CHECKING:
    from adapters.teams.reply import TeamsReplyTarget

log = logging.getLogger("threadwise.teams")

# Teams refuses messages above about 100 KB (413 MessageSizeTooBig) and Microsoft recommends
# staying under 80 KB; the size is the text's UTF-16 encoding (what Teams stores), 2 bytes a unit.
MAX_MESSAGE_LENGTH = 40_000  # UTF-16 code units

INFORMATIVE_TEXT = "Working on it…"
STILL_WORKING_TEXT = "_Still working on it — the rest follows in a new message._"


def split_message(text: str) -> list[str]:
    """Markdown split on paragraph/code-block boundaries, each part under Teams' size limit."""
    return split_markdown(text, MAX_MESSAGE_LENGTH, length=utf16_length)


class TeamsSink:
    """One reply in a 1:1 chat, for `LiveStream`: Teams' stream, then plain messages.

    Every stream activity waits `interval` after the previous one ended (Teams takes one update
    a second, the final message included); `max_chunk_failures` lost updates in a row, or one
    4xx, end the stream.
    """

    interval = 1.0
    open_wait = 2.0
    max_seconds = 110.0
    max_chunk_failures = 3
    edit_interval = None  # Teams messages are not edited: what was shown stays

    def __init__(self, target: TeamsReplyTarget) -> None:
        self._target = target
        self._out = target.outbound
        self._dest = target.destination
        self._client: ConnectorClientBase | None = None
        self.stream_id: str | None = None
        self._opened = False  # Teams takes one stream per reply
        self._seq = 0
        self._last_post = 0.0
        self._failures = 0
        self._answer: AnswerInfo | None = None  # a final model answer: its last message marked
        self._final = ""

    def mark(self, answer: AnswerInfo, final: str) -> None:
        self._answer, self._final = answer, final.rstrip()

    def _ends_answer(self, text: str) -> bool:
        tail = text.rstrip()[-200:]
        return self._answer is not None and bool(tail) and self._final.endswith(tail)

    def _marked(self, activity: Activity, text: str) -> Activity:
        if self._ends_answer(text):
            mark_answer(activity, self._dest.conversation_type, feedback=self._target.feedback)
        return activity

    async def seal(self, posted: object) -> None:
        return None  # Teams messages are not edited: the last one was marked when sent

    @property
    def limit(self) -> int:
        return MAX_MESSAGE_LENGTH

    @staticmethod
    def length(text: str) -> int:
        return utf16_length(text)

    # -- the stream

    async def open(self, text: str) -> str:
        if self._opened:
            raise Refused("this reply has had its stream")
        self._opened = True
        try:
            if text:
                stream_id = await self._post("typing", text, StreamInfo(stream_type="streaming"))
            else:
                stream_id = await self._post(
                    "typing", INFORMATIVE_TEXT, StreamInfo(stream_type="informative")
                )
        except StreamRejected as exc:
            raise Refused(exc.code) from None
        except ConnectorError as exc:
            log.info("Teams did not accept a stream here (%s); replying in one message", exc)
            raise Refused(exc.code) from None
        if not stream_id:
            raise Refused("no stream id")
        self.stream_id = stream_id
        return stream_id

    async def update(self, ref: str, text: str) -> None:
        try:
            await self._post("typing", text, StreamInfo(stream_type="streaming"))
        except StreamRejected:
            log.info("Teams stopped the stream (ContentStreamNotAllowed)")
            raise Refused("ContentStreamNotAllowed") from None
        except ConnectorError as exc:
            self._failures += 1
            if (exc.status and 400 <= exc.status < 500) or (
                self._failures >= self.max_chunk_failures
            ):
                log.warning("stream update refused (%s); ending the stream", exc)
                raise Refused(exc.code) from None
            log.warning("stream update lost (%s); the next one carries the text", exc)
            raise
        self._failures = 0

    async def close(self, ref: str, text: str, *, partial: bool) -> None:
        if partial:
            log.info("finalizing the stream early; the rest follows as a message")
        if not text.strip():
            text = STILL_WORKING_TEXT if partial else "…"
        try:
            await self._post("message", text, StreamInfo(stream_type="final"))
        except ConnectorError as exc:
            log.warning("could not finalize the stream (%s); posting the rest instead", exc)
            raise
        if partial:  # the rest is still being written
            with contextlib.suppress(ConnectorError):
                await self._out.post(
                    await self._lease(),
                    self._dest.activity("typing"),
                    reply_to_id=self._dest.reply_to_id,
                    retry=False,
                )

    async def _post(self, type_: str, text: str, info: StreamInfo) -> str | None:
        """One stream activity; informative and streaming updates carry the next sequence."""
        wait = self._last_post + self.interval - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        client = await self._lease()
        if info.stream_type != "final":
            self._seq += 1
            info.stream_sequence = self._seq
        if self.stream_id:
            info.stream_id = self.stream_id
        if type_ == "message":  # the stream's final message
            activity = self._marked(self._dest.message(text, [info]), text)
        else:
            activity = self._dest.activity(type_, text=text, entities=[info])
        try:
            return await self._out.post(client, activity, reply_to_id=self._dest.reply_to_id)
        finally:
            self._last_post = asyncio.get_running_loop().time()

    async def _lease(self) -> ConnectorClientBase:
        if self._client is None:
            self._client = await self._out.open(self._dest.service_url)
        return self._client

    # -- plain messages and the end

    async def post(self, text: str) -> None:
        activity = self._marked(self._dest.message(text), text)
        await self._out.post(await self._lease(), activity, reply_to_id=self._dest.reply_to_id)

    async def edit(self, ref: object, text: str) -> None:
        raise Refused("Teams replies are not edited")  # edit_interval None: never asked

    async def delete(self, ref: object) -> None:
        raise Refused("Teams replies are not deleted")

    async def end(self, error: Exception | None, *, shown: bool) -> None:
        await self._out.release(self._client)
        self._client = None
        if error is None:
            return
        self._target.metrics.errors.labels("teams_connector").inc()
        if isinstance(error, ConnectorError):
            log.error("reply not delivered to Teams: %s", error)
        else:  # never let a reply crash the responder
            log.error("streamed reply failed: %s", type(error).__name__)
