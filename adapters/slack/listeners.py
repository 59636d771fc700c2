"""bolt listeners for Slack events: an `app_mention` or `message` becomes an `IncomingMessage`.

`events.route()` decides whether the event is for the bot and where the answer goes; the rest is
names (`users.info`, cached), readable text, and handing the message with a `SlackReplyTarget`
to the core in the order the events arrived. bolt has acknowledged the event before a listener
runs, so none of this keeps Slack waiting.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncBoltRequest

from adapters.slack import assistant
from adapters.slack.events import Route, mentioned_users, readable_text, route
from adapters.slack.intake import Intake, installation_workspace
from adapters.slack.reply import SlackReplyTarget
from bot.messages import Attachment, IncomingMessage, conversation_key

log = logging.getLogger("threadwise.slack")


def register(app: AsyncApp) -> None:
    """Add the event listeners; bolt runs the first that matches, so the catch-all goes last."""
    app.event("app_mention")(message_event)
    app.event("message")(message_event)
    app.event(re.compile(r".*"))(other_event)


async def message_event(
    body: dict[str, Any],
    event: dict[str, Any],
    context: AsyncBoltContext,
    request: AsyncBoltRequest,
    intake: Intake,
) -> None:
    intake.track()
    try:
        await _handle_message_event(body, event, context, request, intake)
    except Exception:
        intake.metrics.errors.labels("slack_event").inc()
        log.exception("slack event handling failed")


async def other_event(event: dict[str, Any], intake: Intake) -> None:
    intake.metrics.events.labels("slack", "ignored").inc()
    log.debug("slack event ignored: %s", event.get("type"))


async def _handle_message_event(
    body: dict[str, Any],
    event: dict[str, Any],
    context: AsyncBoltContext,
    request: AsyncBoltRequest | None,
    intake: Intake,
) -> None:
    bot_user_id = context.bot_user_id
    decision = route(
        event,
        bot_user_id=bot_user_id,
        bot_id=context.bot_id,
        thread_followups=intake.thread_followups,
    )
    intake.metrics.events.labels("slack", decision.kind).inc()
    if not decision.answer:
        log.debug("slack event ignored: %s", decision.reason)
        return
    retry = (request.headers.get("x-slack-retry-num") or [None])[0] if request else None
    if retry:
        log.info("slack redelivered an event", extra={"retry_num": retry})
    team = installation_workspace(context)
    user = event["user"]
    raw_text = event.get("text") or ""
    # Messages of one conversation go to the core in the order they arrived, although the
    # name lookups below take longer for some people (a cache miss) than for others.
    key = conversation_key("slack", team, event["channel"], decision.thread)
    before = intake.arrivals.get(key)
    note: str | None = None
    mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    intake.arrivals[key] = mine
    try:
        names = await intake.names.names(
            team, [user, *mentioned_users(raw_text, exclude=bot_user_id)]
        )
        if decision.is_dm:  # only a DM thread can be a pane thread
            note = await assistant.pane_note(intake, team, event["channel"], decision.thread)
        attachments = await intake.files.attachments(event) if intake.files else ()
        if before is not None:
            await before
        text = _submit(
            intake, body, event, decision, team, raw_text, names, bot_user_id, note, attachments
        )
    finally:
        mine.set_result(None)
        if intake.arrivals.get(key) is mine:
            del intake.arrivals[key]
    if note is not None and decision.thread:  # a question in the assistant pane names it
        await assistant.title_first_question(intake, team, event["channel"], decision.thread, text)


def _submit(
    intake: Intake,
    body: dict[str, Any],
    event: dict[str, Any],
    decision: Route,
    team: str,
    raw_text: str,
    names: dict[str, str],
    bot_user_id: str | None,
    note: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> str:
    user = event["user"]
    message = IncomingMessage(
        platform="slack",
        workspace=team,
        channel=event["channel"],
        thread=decision.thread,
        user_id=user,
        user_name=names.get(user, user),
        text=readable_text(raw_text, bot_user_id=bot_user_id, names=names),
        message_id=event["ts"],
        is_dm=decision.is_dm,
        mentions_bot=decision.mentions_bot,
        event_id=body.get("event_id"),
        context=note or None,
        attachments=attachments,
    )
    reply = SlackReplyTarget(
        intake.replies,
        channel=event["channel"],
        thread_ts=decision.thread,
        message_ts=event["ts"],
        # Streaming wants the team the *recipient* belongs to: another org's in Slack Connect.
        team_id=str(event.get("user_team") or event.get("team") or team) or None,
        user_id=user,
    )
    intake.handler.submit(message, reply)
    return message.text
