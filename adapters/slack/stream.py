"""Slack's sink for the streaming core (`adapters.streaming`): one reply in one place.

Live, a reply is streamed with Slack's streaming methods (`chat.startStream` →
`chat.appendStream` … → `chat.stopStream`, through slack_sdk's `chat_stream` helper); the core
hands over the full text of the message so far and the sink appends what is new. Any API error
on start or append refuses streaming (remembered per channel, so later replies there go straight
to the fallback). The fallback, and every message's final form, is `chat.postMessage` +
`chat.update` (+ `chat.delete` for messages a shorter reply no longer needs), reconciled by the
core. A "too long" answer lowers this reply's limit to the size older Slack limits accept.

A final model answer (`mark`) ends with the feedback buttons (`adapters.slack.feedback`): the
call that gives its last message its final text carries them (`chat.stopStream` blocks, or a
`markdown` block beside them in `chat.postMessage` / `chat.update`); `seal` adds them with one
edit only when no such call was needed.

Every failed call is counted and logged here with its method and Slack's error code.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from slack_sdk.web.async_chat_stream import AsyncChatStream

from adapters.posting import Posted, TooLong
from adapters.slack.api import error_code
from adapters.slack.feedback import feedback_block
from adapters.streaming import Refused
from bot.messages import AnswerInfo

if TYPE_CHECKING:
    from adapters.slack.reply import SlackReplyTarget

log = logging.getLogger("threadwise.slack")

TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "markdown_text_too_long"})


class SlackDeliveryError(RuntimeError):
    """Nothing of a reply could be posted to Slack."""


@dataclass(slots=True)
class SlackMessage:
    """A message of the reply: its `ts`, and while it streams, the stream and what it took."""

    ts: str | None
    stream: AsyncChatStream | None = None
    streamed: str = ""
    sealed: bool = False  # carries the feedback buttons


class SlackSink:
    """Slack for `LiveStream` (native stream, post-and-edit) and for plain `deliver`."""

    open_wait = None  # the assistant status shows progress until the first words
    max_seconds = None  # a Slack stream has no time limit

    def __init__(self, target: SlackReplyTarget) -> None:
        self._target = target
        self._replies = target.replies
        self._client = target.replies.client
        self.limit = target.replies.message_limit
        self.interval = target.replies.stream_interval
        # A small tail waits for the reply's end (adapters/pacing.py): a short reply is
        # chat.startStream + chat.stopStream, with no appendStream between them.
        self.min_update = target.replies.stream_min_update
        self.hold = target.replies.stream_hold
        self.edit_interval = target.replies.update_interval
        self._answer: AnswerInfo | None = None  # set when the reply is a final model answer
        self._final = ""

    # -- a final model answer

    def mark(self, answer: AnswerInfo, final: str) -> None:
        if self._replies.feedback:
            self._answer, self._final = answer, final.rstrip()

    def _ends_answer(self, text: str) -> bool:
        """Whether `text` is the last message of the marked answer (it ends the final text)."""
        tail = text.rstrip()[-200:]
        return self._answer is not None and bool(tail) and self._final.endswith(tail)

    def _blocks(self, text: str | None) -> list[dict]:
        assert self._answer is not None
        head = [{"type": "markdown", "text": text}] if text is not None else []
        return [*head, feedback_block(self._answer)]

    async def seal(self, posted: Posted) -> None:
        """The answer's last message has its final text: give it the buttons if it lacks them."""
        msg = posted.ref
        if self._answer is None or not isinstance(msg, SlackMessage) or msg.sealed or not msg.ts:
            return
        try:
            await self._client.chat_update(
                channel=self._target.channel,
                ts=msg.ts,
                text=posted.shown,
                blocks=self._blocks(posted.shown),
            )
            msg.sealed = True
        except Exception as e:
            self._replies.failure("chat.update", e)  # the answer stands, without buttons

    @staticmethod
    def length(text: str) -> int:
        return len(text)

    # -- native stream

    async def open(self, text: str) -> SlackMessage:
        t = self._target
        stream = await self._client.chat_stream(
            channel=t.channel,
            thread_ts=t.thread_ts,
            recipient_team_id=t.team_id,
            recipient_user_id=t.user_id,
            buffer_size=1,  # the core paces the calls
        )
        msg = SlackMessage(None, stream)
        await self._append(msg, text)
        msg.ts = str(stream.ts)
        return msg

    async def update(self, msg: SlackMessage, text: str) -> None:
        if msg.stream is None:
            raise Refused("the stream is closed")
        await self._append(msg, text)

    async def _append(self, msg: SlackMessage, text: str) -> None:
        delta = text[len(msg.streamed) :]
        if not delta:
            return
        assert msg.stream is not None
        try:
            await msg.stream.append(markdown_text=delta)
        except Exception as e:
            method = "chat.appendStream" if msg.stream.ts else "chat.startStream"
            code = self._replies.failure(method, e)
            await self._refuse(msg)
            raise Refused(code) from e
        msg.streamed = text

    async def _refuse(self, msg: SlackMessage) -> None:
        """Streaming refused: remember it for the channel and close what was started."""
        self._replies.refuse("stream", self._target.channel)
        stream, msg.stream = msg.stream, None
        if stream is not None and stream.ts:
            with contextlib.suppress(Exception):
                await stream.stop()

    async def close(self, msg: SlackMessage, text: str, *, partial: bool) -> None:
        stream, msg.stream = msg.stream, None
        extends = text.startswith(msg.streamed)
        if stream is not None:
            # The usual end: the text streamed plus perhaps a note ("cut off…") or the line
            # closing a code block; it goes out with chat.stopStream, no edit needed.
            extra = text[len(msg.streamed) :] if extends else ""
            seal = not partial and extends and self._ends_answer(text)
            try:
                await stream.stop(
                    markdown_text=extra or None, blocks=self._blocks(None) if seal else None
                )
            except Exception as e:
                self._replies.failure("chat.stopStream", e)
                raise
            if extends:
                msg.streamed = text
                msg.sealed = seal
                return
        await self.edit(msg, text)

    # -- post and edit

    async def post(self, text: str) -> SlackMessage:
        t = self._target
        seal = self._ends_answer(text)
        # markdown_text goes alone; with the buttons the text is a markdown block beside them.
        body = {"text": text, "blocks": self._blocks(text)} if seal else {"markdown_text": text}
        try:
            resp = await self._client.chat_postMessage(
                channel=t.channel,
                thread_ts=t.thread_ts,
                unfurl_links=False,
                unfurl_media=False,
                **body,
            )
        except Exception as e:
            self._too_long(self._replies.failure("chat.postMessage", e), e)
            raise
        return SlackMessage(str(resp["ts"]), sealed=seal)

    async def edit(self, msg: SlackMessage, text: str) -> None:
        seal = self._ends_answer(text)
        body = {"text": text, "blocks": self._blocks(text)} if seal else {"markdown_text": text}
        try:
            await self._client.chat_update(channel=self._target.channel, ts=msg.ts, **body)
        except Exception as e:
            self._too_long(self._replies.failure("chat.update", e), e)
            raise
        msg.sealed = seal

    async def delete(self, msg: SlackMessage) -> None:
        try:
            await self._client.chat_delete(channel=self._target.channel, ts=msg.ts)
        except Exception as e:
            self._replies.failure("chat.delete", e)

    def _too_long(self, code: str, e: Exception) -> None:
        if code in TOO_LONG:
            self.limit = min(self.limit, self._replies.fallback_limit)
            raise TooLong(code) from e

    # -- the end

    async def end(self, error: Exception | None, *, shown: bool) -> None:
        await self._target.done()
        if error is None:
            return
        if not shown:
            raise SlackDeliveryError(f"nothing could be posted: {error_code(error)}") from error
        log.warning("reply posted only in part: %s", error_code(error))
