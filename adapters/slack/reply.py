"""Replies in Slack: the core's `ReplyTarget` / `ReplyStream` over the Web API.

A reply in a thread is streamed with Slack's streaming methods (`chat.startStream` →
`chat.appendStream` … → `chat.stopStream`, through slack_sdk's `chat_stream` helper). Where
streaming is refused (any API error on start or append; remembered per channel for ten
minutes), or where there is no thread to stream into (a top-level DM), the reply is posted with
`chat.postMessage` and then edited with `chat.update`, at most once per interval. Either way the
final text is reconciled at the end: split into messages of at most `message_limit` characters
on paragraph / code-block boundaries (`adapters.text.split_markdown`), each message edited or
posted so the thread reads exactly the final text.

Everything posted — streamed, posted, edited, or answered to a slash command — is defused on its
way in (`adapters.slack.mentions`): the model's text or a quoted prompt never notifies anyone.

Failures are handled here: 429s are retried by the client's retry handlers, every other API
error is logged with its method and code, and a method that fails is worked around (status →
reaction, stream → post + update, update → new post, too long → smaller pieces). A
`ReplyTarget` method raises `SlackDeliveryError` only when nothing at all could be posted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_chat_stream import AsyncChatStream
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api import error_code, log_failure
from adapters.slack.mentions import MentionGuard, defuse_mentions
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.text import split_markdown
from bot.metrics import Metrics

log = logging.getLogger("threadwise.slack")

MESSAGE_LIMIT = 11_000  # characters of markdown_text per message (Slack's cap is 12,000)
FALLBACK_LIMIT = 3_500  # after a "too long" error: the size Slack's older text limits accept
SLASH_LIMIT = 2_800  # a response_url answer (mrkdwn text, shown in a 3,000-character section)
SLASH_MAX_RESPONSES = 5  # Slack accepts five responses per response_url
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long", "markdown_text_too_long"})
STATUS_TEXT = "is thinking…"
THINKING_REACTION = "hourglass_flowing_sand"
TYPING_REFRESH_SECONDS = 60.0  # Slack drops a status after two minutes without a reply
REFUSAL_MEMORY_SECONDS = 600.0


class SlackDeliveryError(RuntimeError):
    """Nothing of a reply could be posted to Slack."""


class _TooLong(Exception):
    pass


class ResponseUrlError(Exception):
    """A slash command's response_url did not take the answer."""

    def __init__(self, code: str):
        super().__init__(code)
        self.slack_error = code


@dataclass
class SlackReplies:
    """What every reply of one adapter shares: the client, metrics, pacing and what Slack refused.

    `refuse(feature, channel)` remembers that Slack refused streaming (`"stream"`) or the
    assistant status (`"status"`) in a channel, so later replies there go straight to the
    fallback instead of failing first, for `REFUSAL_MEMORY_SECONDS`.
    """

    client: AsyncWebClient
    metrics: Metrics | None = None
    stream_interval: float = 0.5  # seconds between appendStream calls
    update_interval: float = 1.0  # seconds between chat.update calls (Tier 3: ~50/min)
    message_limit: int = MESSAGE_LIMIT
    fallback_limit: int = FALLBACK_LIMIT
    _refused: dict[tuple[str, str], float] = field(default_factory=dict)

    def refuse(self, feature: str, channel: str) -> None:
        self._refused[(feature, channel)] = time.monotonic() + REFUSAL_MEMORY_SECONDS

    def refused(self, feature: str, channel: str) -> bool:
        until = self._refused.get((feature, channel))
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._refused[(feature, channel)]
            return False
        return True

    def failure(self, method: str, e: BaseException, *, level: int = logging.WARNING) -> str:
        if self.metrics is not None:
            self.metrics.errors.labels("slack_api").inc()
        return log_failure(method, e, level=level)


@dataclass
class _Message:
    ts: str
    shown: str  # the Markdown this message shows now


class _Thread:
    """Posting, editing and deleting the bot's messages in one place (channel + thread)."""

    def __init__(self, replies: SlackReplies, channel: str, thread_ts: str | None):
        self.replies = replies
        self.client = replies.client
        self.channel = channel
        self.thread_ts = thread_ts

    async def post(self, text: str) -> _Message:
        try:
            resp = await self.client.chat_postMessage(
                channel=self.channel,
                thread_ts=self.thread_ts,
                markdown_text=text,
                unfurl_links=False,
                unfurl_media=False,
            )
        except Exception as e:
            if self.replies.failure("chat.postMessage", e) in TOO_LONG:
                raise _TooLong from e
            raise
        return _Message(ts=str(resp["ts"]), shown=text)

    async def update(self, msg: _Message, text: str) -> None:
        try:
            await self.client.chat_update(channel=self.channel, ts=msg.ts, markdown_text=text)
        except Exception as e:
            if self.replies.failure("chat.update", e) in TOO_LONG:
                raise _TooLong from e
            raise
        msg.shown = text

    async def delete(self, msg: _Message) -> None:
        try:
            await self.client.chat_delete(channel=self.channel, ts=msg.ts)
        except Exception as e:
            self.replies.failure("chat.delete", e)

    async def reconcile(self, msgs: list[_Message], text: str, limit: int) -> None:
        """Make `msgs` read `text`, split at `limit`: edit what differs, post what is missing.

        `msgs` is changed in place, so whatever was posted stays known even if a later call
        fails (the exception then propagates).
        """
        pieces = split_markdown(text, limit)
        if not pieces:
            return
        for i, piece in enumerate(pieces):
            if i < len(msgs):
                if msgs[i].shown == piece:
                    continue
                try:
                    await self.update(msgs[i], piece)
                    continue
                except _TooLong:
                    raise
                except Exception:
                    # This message cannot be edited (deleted, too old, still streaming…): post
                    # it and everything after it anew, so the thread keeps the order.
                    for stale in msgs[i:]:
                        await self.delete(stale)
                    del msgs[i:]
            msgs.append(await self.post(piece))
        for extra in msgs[len(pieces) :]:
            await self.delete(extra)
        del msgs[len(pieces) :]

    async def deliver(self, msgs: list[_Message], text: str) -> None:
        """`reconcile` at the normal size, then at the fallback size if Slack said too long."""
        try:
            await self.reconcile(msgs, text, self.replies.message_limit)
        except _TooLong:
            await self.reconcile(msgs, text, self.replies.fallback_limit)


class SlackReplyTarget:
    """The answer to one Slack message: its thread, or the DM top level when `thread_ts` is None.

    `message_ts` is the person's message (for the reaction fallback); `team_id` / `user_id`
    are the recipient Slack's streaming methods want outside DMs.
    """

    def __init__(
        self,
        replies: SlackReplies,
        *,
        channel: str,
        thread_ts: str | None,
        message_ts: str | None,
        team_id: str | None,
        user_id: str | None,
    ):
        self.replies = replies
        self.channel = channel
        self.thread_ts = thread_ts
        self.message_ts = message_ts
        self.team_id = team_id
        self.user_id = user_id
        self._thread = _Thread(replies, channel, thread_ts)
        self._typing_at: float | None = None
        self._reacted = False
        self._streams: list[DefusedStream] = []

    # -- progress ---------------------------------------------------------------------------

    async def typing(self) -> None:
        """`assistant.threads.setStatus` "is thinking…" in a thread; else an ⌛ reaction.

        Called again while the model works it refreshes the status once a minute; never raises.
        """
        now = time.monotonic()
        if self._typing_at is not None and (
            self._reacted or now - self._typing_at < TYPING_REFRESH_SECONDS
        ):
            return
        self._typing_at = now
        client = self.replies.client
        if self.thread_ts and not self.replies.refused("status", self.channel):
            try:
                await client.assistant_threads_setStatus(
                    channel_id=self.channel, thread_ts=self.thread_ts, status=STATUS_TEXT
                )
                return
            except Exception as e:
                self.replies.failure("assistant.threads.setStatus", e, level=logging.INFO)
                self.replies.refuse("status", self.channel)
        if self.message_ts and not self._reacted:
            try:
                await client.reactions_add(
                    channel=self.channel, timestamp=self.message_ts, name=THINKING_REACTION
                )
                self._reacted = True
            except Exception as e:
                if error_code(e) == "already_reacted":
                    self._reacted = True
                else:
                    self.replies.failure("reactions.add", e)

    async def _done(self) -> None:
        """The reply is out: take the ⌛ back (a status clears itself when the bot posts)."""
        if not self._reacted:
            return
        self._reacted = False
        try:
            await self.replies.client.reactions_remove(
                channel=self.channel, timestamp=self.message_ts, name=THINKING_REACTION
            )
        except Exception as e:
            if error_code(e) != "no_reaction":
                self.replies.failure("reactions.remove", e)

    # -- replies ----------------------------------------------------------------------------

    async def send(self, text: str) -> None:
        """Post one complete Markdown message (split if longer than Slack takes)."""
        for s in self._streams:
            await s.close_quietly()  # e.g. an apology after a stream the model broke off
        msgs: list[_Message] = []
        try:
            await self._thread.deliver(msgs, defuse_mentions(text))
        except Exception as e:
            if not msgs:
                raise SlackDeliveryError(f"nothing could be posted: {error_code(e)}") from e
        finally:
            await self._done()

    def stream(self) -> DefusedStream:
        can_stream = bool(self.thread_ts) and not self.replies.refused("stream", self.channel)
        s = DefusedStream(SlackReplyStream(self, streaming=can_stream))
        self._streams.append(s)
        return s


class DefusedStream:
    """A reply stream whose text is defused before the stream sees it.

    Appends go through a `MentionGuard` (which holds back only what the next piece could still
    turn into a mention); the final text is defused whole, and reads as the guarded stream did.
    """

    def __init__(self, inner: SlackReplyStream):
        self._inner = inner
        self._guard = MentionGuard()
        self._raw: list[str] = []  # everything appended, for a finish without its own text

    async def append(self, text: str) -> None:
        self._raw.append(text)
        if shown := self._guard.feed(text):
            await self._inner.append(shown)

    def _final(self, text: str) -> str:
        return defuse_mentions(text if text.strip() else "".join(self._raw))

    async def finish(self, text: str) -> None:
        await self._inner.finish(self._final(text))

    async def close_quietly(self) -> None:
        await self._inner.close_quietly(self._final(""))


class SlackReplyStream:
    """One reply being written: streamed, or posted and edited; reconciled on `finish`."""

    def __init__(self, target: SlackReplyTarget, *, streaming: bool):
        self._target = target
        self._replies = target.replies
        self._thread = target._thread
        self.streaming = streaming  # False once Slack refused streaming (or never could)
        self._text = ""  # everything appended
        self._pending = ""  # appended, not yet streamed
        self._dirty = False  # appended, not yet shown by an update
        self._msgs: list[_Message] = []
        self._stream: AsyncChatStream | None = None
        self._stream_msg: _Message | None = None
        self._lock = asyncio.Lock()
        self._last_flush: float | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_busy = False
        self._closed = False
        self._live = True  # False once a live update failed: finish() alone delivers the reply

    @property
    def _interval(self) -> float:
        return self._replies.stream_interval if self.streaming else self._replies.update_interval

    async def append(self, text: str) -> None:
        if self._closed or not text:
            return
        self._text += text
        if self.streaming:
            self._pending += text
        else:
            self._dirty = True
        if not self._live:
            return
        async with self._lock:
            now = time.monotonic()
            if self._last_flush is None or now - self._last_flush >= self._interval:
                await self._flush()
            elif self._timer is None or self._timer.done():
                delay = self._last_flush + self._interval - now
                self._timer = asyncio.create_task(self._flush_later(delay))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            if self._last_flush is not None and now - self._last_flush < self._interval:
                # An append flushed while this timer slept: wait for the next slot instead.
                if self._pending or self._dirty:
                    wait = self._last_flush + self._interval - now
                    self._timer = asyncio.create_task(self._flush_later(wait))
                return
            self._timer_busy = True
            try:
                await self._flush()
            finally:
                self._timer_busy = False

    async def _flush(self) -> None:
        """Show what is new (lock held). Live progress is best effort: errors are logged."""
        if not self._live:
            return
        self._last_flush = time.monotonic()
        try:
            if self.streaming:
                await self._flush_stream()
            if not self.streaming and self._dirty:
                self._dirty = False
                await self._thread.deliver(self._msgs, self._text)
        except Exception as e:
            # Slack takes neither the stream nor a post/update now: retrying it for every chunk
            # would hold the model's stream up for seconds each time. Stop live progress;
            # finish() delivers the whole reply (or reports that it could not).
            self._live = False
            log.debug("live reply update failed: %s", error_code(e))

    # -- streaming ---------------------------------------------------------------------------

    async def _flush_stream(self) -> None:
        t = self._target
        # Send what is pending now; text appended during these calls waits for the next slot.
        data, self._pending = self._pending, ""
        while data:
            if self._stream is None:
                self._stream = await t.replies.client.chat_stream(
                    channel=t.channel,
                    thread_ts=t.thread_ts,
                    recipient_team_id=t.team_id,
                    recipient_user_id=t.user_id,
                    buffer_size=1,  # we pace the calls ourselves
                )
                self._stream_msg = None
            shown = len(self._stream_msg.shown) if self._stream_msg else 0
            room = self._replies.message_limit - shown
            if room <= 0:
                await self._stop_stream()  # this message is full: go on in a new one
                continue
            chunk = data[:room]
            try:
                await self._stream.append(markdown_text=chunk)
            except Exception as e:
                method = "chat.appendStream" if self._stream.ts else "chat.startStream"
                self._replies.failure(method, e)
                await self._fall_back()
                return
            if self._stream_msg is None:
                self._stream_msg = _Message(ts=str(self._stream.ts), shown="")
                self._msgs.append(self._stream_msg)
            self._stream_msg.shown += chunk
            data = data[len(chunk) :]

    async def _stop_stream(self, extra: str = "") -> None:
        stream, msg = self._stream, self._stream_msg
        self._stream, self._stream_msg = None, None
        if stream is None:
            return
        try:
            resp = await stream.stop(markdown_text=extra or None)
        except Exception as e:
            self._replies.failure("chat.stopStream", e)
            return
        if msg is None and stream.ts:  # stop() started the stream itself
            msg = _Message(ts=str(resp.get("ts") or stream.ts), shown="")
            self._msgs.append(msg)
        if msg is not None:
            msg.shown += extra

    async def _fall_back(self) -> None:
        """Streaming refused: remember it, close what was started, post + update instead."""
        t = self._target
        self._replies.refuse("stream", t.channel)
        stream, self._stream, self._stream_msg = self._stream, None, None
        if stream is not None and stream.ts:
            with contextlib.suppress(Exception):
                await stream.stop()
        self.streaming = False
        self._pending = ""
        self._dirty = False
        await self._thread.deliver(self._msgs, self._text)

    # -- the end -----------------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None and not self._timer.done() and not self._timer_busy:
            self._timer.cancel()

    async def finish(self, text: str) -> None:
        """Close the stream and make the thread read exactly `text` (split if too long)."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        final = text if text.strip() else self._text
        try:
            async with self._lock:
                try:
                    if self._stream is not None:
                        if final.startswith(self._text):
                            # The usual end: the final text is what was streamed plus perhaps a
                            # note ("cut off…"); it goes out with chat.stopStream, no edit needed.
                            self._pending += final[len(self._text) :]
                            self._text = final
                        # Stream what is still buffered and close the stream; when the buffer would
                        # overflow this message, flush it (rolling over) and close empty.
                        room = self._replies.message_limit - (
                            len(self._stream_msg.shown) if self._stream_msg else 0
                        )
                        if len(self._pending) > room:
                            await self._flush_stream()
                        if self._stream is not None:
                            extra, self._pending = self._pending, ""
                            await self._stop_stream(extra)
                except Exception as e:  # the stream is closed as well as it can be
                    log.debug("closing the stream failed: %s", error_code(e))
                self._pending = ""
                if final.strip():
                    try:
                        await self._thread.deliver(self._msgs, final)
                    except Exception as e:
                        if not any(m.shown.strip() for m in self._msgs):
                            raise SlackDeliveryError(
                                f"nothing could be posted: {error_code(e)}"
                            ) from e
                        log.warning("reply posted only in part: %s", error_code(e))
        finally:
            await self._target._done()

    async def close_quietly(self, text: str | None = None) -> None:
        """Finish with `text` (else what was streamed), never raising (another message follows)."""
        if self._closed:
            return
        try:
            await self.finish(self._text if text is None else text)
        except Exception as e:
            log.debug("closing an unfinished reply failed: %s", error_code(e))


class SlashReplyTarget:
    """The answer to `/threadwise …`: ephemeral messages to the caller through `response_url`.

    response_url takes mrkdwn, not Markdown, so the text is converted; at most five answers
    are accepted per command, so a longer answer is cut at the fifth with a note.
    """

    def __init__(self, respond: Callable[..., Awaitable[Any]], replies: SlackReplies):
        self._respond = respond
        self.replies = replies

    async def typing(self) -> None:
        return None  # Slack shows nothing for a slash command in progress

    async def send(self, text: str) -> None:
        pieces = split_markdown(defuse_mentions(text), SLASH_LIMIT)
        if len(pieces) > SLASH_MAX_RESPONSES:
            pieces = [
                *pieces[: SLASH_MAX_RESPONSES - 1],
                "_(The rest of this answer is too long for a slash command; ask in a DM.)_",
            ]
        delivered = 0
        for piece in pieces:
            try:
                resp = await self._respond(text=to_mrkdwn(piece), response_type="ephemeral")
                status = getattr(resp, "status_code", 200)
                if status != 200:
                    raise ResponseUrlError(f"http_{status}")
                delivered += 1
            except Exception as e:
                self.replies.failure("response_url", e)
                break
        if pieces and not delivered:
            raise SlackDeliveryError("the slash command answer could not be posted")

    def stream(self) -> BufferedReplyStream:
        return BufferedReplyStream(self.send)


class BufferedReplyStream:
    """A stream for places that cannot edit a message: nothing shows until `finish`."""

    def __init__(self, send: Callable[[str], Awaitable[None]]):
        self._send = send
        self._text = ""
        self._done = False

    async def append(self, text: str) -> None:
        self._text += text

    async def finish(self, text: str) -> None:
        if self._done:
            return
        self._done = True
        final = text if text.strip() else self._text
        if final.strip():
            await self._send(final)
