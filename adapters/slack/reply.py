"""Replies in Slack: the core's `ReplyTarget` over the Web API.

A reply in a thread streams through the core (`adapters.streaming.LiveStream`) into Slack's sink
(`adapters.slack.stream`): Slack's streaming methods, or where Slack refuses them (remembered per
channel for ten minutes) or there is no thread to stream into (a top-level DM), a post edited at
most once per interval. Either way the final text is reconciled at the end: split into messages
of at most `message_limit` characters on paragraph / code-block boundaries, each edited or posted
so the thread reads exactly the final text.

Everything posted — streamed, posted, edited, or answered to a slash command — is defused on its
way in (`adapters.slack.mentions`): the model's text or a quoted prompt never notifies anyone.

Progress shows as the assistant status "is thinking…", or an ⌛ reaction where Slack refuses the
status. 429s are retried by the client's retry handlers, every other API error is logged with its
method and code, and a method that fails is worked around (status → reaction, stream → post +
update, update → new post, too long → smaller pieces). A `ReplyTarget` method raises
`SlackDeliveryError` only when nothing at all could be posted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.posting import Posted, deliver
from adapters.slack.api import error_code, log_failure
from adapters.slack.mentions import MentionGuard, defuse_mentions
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.stream import SlackDeliveryError, SlackSink
from adapters.streaming import BufferedStream, LiveStream
from adapters.text import split_markdown
from bot.messages import AnswerInfo
from bot.metrics import Metrics

log = logging.getLogger("threadwise.slack")

MESSAGE_LIMIT = 11_000  # characters of markdown_text per message (Slack's cap is 12,000)
FALLBACK_LIMIT = 3_500  # after a "too long" error: the size Slack's older text limits accept
SLASH_LIMIT = 2_800  # a response_url answer (mrkdwn text, shown in a 3,000-character section)
SLASH_MAX_RESPONSES = 5  # Slack accepts five responses per response_url
STATUS_TEXT = "is thinking…"
THINKING_REACTION = "hourglass_flowing_sand"
TYPING_REFRESH_SECONDS = 60.0  # Slack drops a status after two minutes without a reply
REFUSAL_MEMORY_SECONDS = 600.0


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
    stream_min_update: int = 120  # characters an appendStream waits for, up to stream_hold
    stream_hold: float = 1.5
    update_interval: float = 1.0  # seconds between chat.update calls (Tier 3: ~50/min)
    message_limit: int = MESSAGE_LIMIT
    fallback_limit: int = FALLBACK_LIMIT
    feedback: bool = False  # final model answers carry the feedback buttons (FEEDBACK)
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
        self._typing_at: float | None = None
        self._reacted = False
        self._stream: DefusedStream | None = None

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

    async def done(self) -> None:
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
        # e.g. an apology after a stream the model broke off (or never began: it says it)
        if self._stream is not None and await self._stream.end_with(text):
            return
        msgs: list[Posted] = []
        try:
            await deliver(SlackSink(self), msgs, defuse_mentions(text))
        except Exception as e:
            if not msgs:
                raise SlackDeliveryError(f"nothing could be posted: {error_code(e)}") from e
        finally:
            await self.done()

    def stream(self) -> DefusedStream:
        native = bool(self.thread_ts) and not self.replies.refused("stream", self.channel)
        self._stream = DefusedStream(LiveStream(SlackSink(self), native=native))
        return self._stream


class DefusedStream:
    """A reply stream whose text is defused before the stream sees it.

    Appends go through a `MentionGuard` (which holds back only what the next piece could still
    turn into a mention); the final text is defused whole, and reads as the guarded stream did.
    """

    def __init__(self, inner: LiveStream):
        self._inner = inner
        self._guard = MentionGuard()
        self._raw: list[str] = []  # everything appended, for a finish without its own text

    async def append(self, text: str) -> None:
        self._raw.append(text)
        if shown := self._guard.feed(text):
            await self._inner.append(shown)

    def _final(self, text: str) -> str:
        return defuse_mentions(text if text.strip() else "".join(self._raw))

    async def finish(self, text: str, *, answer: AnswerInfo | None = None) -> None:
        await self._inner.finish(self._final(text), answer=answer)

    async def end_with(self, text: str) -> bool:
        """End early because a message follows; True if `text` became this reply (none shown)."""
        if self._inner.finished:
            return False
        if not self._raw:
            await self.finish(text)
            return True
        try:
            await self.finish("")
        except Exception as e:
            log.debug("closing an unfinished reply failed: %s", error_code(e))
        return False


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

    def stream(self) -> BufferedStream:
        return BufferedStream(self.send)
