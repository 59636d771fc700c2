"""The slash command listener: `/threadwise ARGS` is the chat command `!ARGS`, answered ephemerally.

Every slash command this app receives is its own (/threadwise, or a renamed copy), so one
listener takes them all. It acknowledges at once with nothing (an empty ack shows nothing) and
the answer follows through `response_url`.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond

from adapters.slack.events import mentioned_users, readable_text
from adapters.slack.intake import Intake, installation_workspace
from adapters.slack.reply import SlashReplyTarget
from bot.messages import IncomingMessage

log = logging.getLogger("threadwise.slack")


def register(app: AsyncApp) -> None:
    app.command(re.compile(r".*"))(slash_command)


async def slash_command(
    ack: AsyncAck,
    command: dict[str, Any],
    respond: AsyncRespond,
    context: AsyncBoltContext,
    intake: Intake,
) -> None:
    await ack()
    intake.track()
    try:
        await _handle_command(command, respond, context, intake)
    except Exception:
        intake.metrics.errors.labels("slack_event").inc()
        log.exception("slack command handling failed")


async def _handle_command(
    command: dict[str, Any], respond: AsyncRespond, context: AsyncBoltContext, intake: Intake
) -> None:
    intake.metrics.events.labels("slack", "slash_command").inc()
    user = command.get("user_id")
    channel = command.get("channel_id")
    if not user or not channel:
        log.warning("slack command without user or channel ignored")
        return
    team = installation_workspace(context)  # the payload's team_id is the caller's workspace
    bot_user_id = context.bot_user_id
    raw_args = command.get("text") or ""
    names = await intake.names.names(team, [user, *mentioned_users(raw_args, exclude=bot_user_id)])
    args = readable_text(raw_args, bot_user_id=bot_user_id, names=names)
    if args.startswith("!"):
        args = args[1:].lstrip()
    message = IncomingMessage(
        platform="slack",
        workspace=team,
        channel=channel,
        thread=None,
        user_id=user,
        user_name=names.get(user, user),
        text="!" + (args or "help"),
        message_id=command.get("trigger_id") or f"slash-{uuid.uuid4().hex}",
        is_dm=channel.startswith("D") or command.get("channel_name") == "directmessage",
        mentions_bot=True,
        event_id=None,
    )
    intake.handler.submit(message, SlashReplyTarget(respond, intake.replies))
