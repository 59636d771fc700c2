"""The bot's App Home tab in Slack: for admins, the effective prompt, today's usage and feedback.

`app_home_opened` (tab `home`) publishes a view for the person who opened it (`views.publish`).
What it shows is what the admin commands answer (`!prompt show`, `!usage`, `!feedback`) for the
person's DM with the bot, run through the command table and its one access check: anyone who
is not an admin of this workspace sees only how to talk to the bot.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from adapters.slack.intake import Intake, installation_workspace
from adapters.slack.mentions import defuse_mentions
from adapters.slack.mrkdwn import to_mrkdwn
from bot.commands import Access, Commands
from bot.messages import IncomingMessage

log = logging.getLogger("threadwise.slack")

SECTIONS = (
    ("System prompt in effect", "!prompt show"),
    ("Usage", "!usage"),
    ("Feedback", "!feedback"),
)
SECTION_LIMIT = 2_900  # a section block's text holds 3,000 characters
EVERYONE = (
    "Write to Threadwise in the *Messages* tab, mention it in a channel, or open it in the "
    "assistant pane. Type `!help` to see the commands you can use."
)


def register(app: AsyncApp) -> None:
    app.event("app_home_opened")(home_opened)


def _section(text: str) -> dict[str, Any]:
    text = to_mrkdwn(defuse_mentions(text))
    if len(text) > SECTION_LIMIT:
        text = text[: SECTION_LIMIT - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def view_for(commands: Commands, message: IncomingMessage) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": "Threadwise"}},
        _section(EVERYONE),
    ]
    if commands.may(message, Access.WORKSPACE_ADMIN):
        for title, command in SECTIONS:
            result = await commands.run(dataclasses.replace(message, text=command))
            blocks += [{"type": "divider"}, _section(f"*{title}*\n{result.text}")]
    return {"type": "home", "blocks": blocks}


async def home_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
    intake: Intake = context["intake"]
    user = event.get("user")
    if event.get("tab") != "home" or intake.commands is None or not isinstance(user, str):
        return
    message = IncomingMessage(
        platform="slack",
        workspace=installation_workspace(context),
        channel=str(event.get("channel") or user),
        thread=None,
        user_id=user,
        user_name=user,
        text="",
        message_id=f"home:{event.get('event_ts', '')}",
        is_dm=True,
    )
    try:
        view = await view_for(intake.commands, message)
        await intake.replies.client.views_publish(user_id=user, view=view)
    except Exception as e:
        intake.replies.failure("views.publish", e)
