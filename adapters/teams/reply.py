"""Replies in Teams: the core's `ReplyTarget` for one incoming activity.

Typing, Markdown messages (split under Teams' size limit), and streamed replies: in 1:1 chats
through the core (`adapters.streaming.LiveStream`) into Teams' streaming protocol
(`adapters.teams.stream`); group chats and channels cannot stream, so there the reply is posted
once at the end (`adapters.streaming.BufferedStream`). Posts go through the shared connector
pool (`adapters.teams.connector.Outbound`); every activity is built by `Destination`, which
takes the mentions out of the bot's text (`trust.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from microsoft_agents.activity import Activity, ConversationReference

from adapters.streaming import BufferedStream, LiveStream
from adapters.teams import trust
from adapters.teams.connector import ConnectorError, Outbound
from adapters.teams.feedback import mark_answer
from adapters.teams.stream import TeamsSink, split_message
from bot.messages import AnswerInfo
from bot.metrics import Metrics

log = logging.getLogger("threadwise.teams")


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a reply goes: the incoming activity's conversation reference."""

    reference: ConversationReference
    reply_to_id: str | None

    @property
    def service_url(self) -> str:
        return self.reference.service_url or ""

    def activity(self, type_: str, **fields) -> Activity:
        # Everything the bot posts passes here: its text can mention no one (`trust.py`).
        if isinstance(fields.get("text"), str):
            fields["text"] = trust.neutral_text(fields["text"])
        if "entities" in fields:
            fields["entities"] = trust.without_mentions(fields["entities"])
        activity = Activity(type=type_, **fields)
        activity.apply_conversation_reference(self.reference)
        if not self.reply_to_id:
            activity.reply_to_id = None
        return activity

    @property
    def conversation_type(self) -> str | None:
        conversation = self.reference.conversation
        return conversation.conversation_type if conversation is not None else None

    def message(self, text: str, entities: list | None = None) -> Activity:
        fields: dict = {"text": text, "text_format": "markdown"}
        if entities:
            fields["entities"] = entities
        return self.activity("message", **fields)


class TeamsReplyTarget:
    """`ReplyTarget` for one Teams message: typing, Markdown messages, streamed replies."""

    def __init__(
        self,
        outbound: Outbound,
        destination: Destination,
        *,
        streaming: bool,
        metrics: Metrics,
        feedback: bool = False,
    ) -> None:
        self.outbound = outbound
        self.feedback = feedback  # final model answers in chats carry Teams' feedback loop
        self.destination = destination
        self.streaming = streaming
        self.metrics = metrics
        self._stream: LiveStream | BufferedStream | None = None

    async def typing(self) -> None:
        if isinstance(self._stream, LiveStream) and not self._stream.finished:
            return  # the stream (or its pending first update) already shows progress
        try:
            async with self.outbound.client(self.destination.service_url) as client:
                await self.outbound.post(
                    client,
                    self.destination.activity("typing"),
                    reply_to_id=self.destination.reply_to_id,
                    retry=False,
                )
        except ConnectorError as exc:
            log.info("typing indicator not shown: %s", exc)

    async def send(self, text: str) -> None:
        # An apology after a failed model call: a stream already open (showing only its
        # informative update) ends with this text rather than being left hanging.
        if self._stream is not None and await self._stream.end_with(text):
            return
        await self.post_text(text)

    def stream(self) -> LiveStream | BufferedStream:
        if self.streaming:
            self._stream = LiveStream(TeamsSink(self))
        else:
            self._stream = BufferedStream(self.post_text, self.post_text)
        return self._stream

    async def post_text(self, text: str, answer: AnswerInfo | None = None) -> None:
        """Post `text` as messages split under the size limit; a failure is logged, ends it.

        For a final model `answer` the last message carries the AI label and feedback loop.
        """
        parts = split_message(text)
        if not parts:
            return
        dest = self.destination
        try:
            async with self.outbound.client(dest.service_url) as client:
                for i, part in enumerate(parts):
                    activity = dest.message(part)
                    if answer is not None and i == len(parts) - 1:
                        mark_answer(activity, dest.conversation_type, feedback=self.feedback)
                    await self.outbound.post(client, activity, reply_to_id=dest.reply_to_id)
        except ConnectorError as exc:
            self.metrics.errors.labels("teams_connector").inc()
            log.error("reply not delivered to Teams: %s", exc)
