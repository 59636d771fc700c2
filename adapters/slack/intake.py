"""What every Slack listener shares: the adapter's parts (`Intake`), the installation's workspace.

bolt injects a listener's arguments by name, context keys included, so `provide()` puts the
`Intake` into every request's context and a listener asks for it as `intake`, next to `event`,
`context` or `ack`. listeners.py and slash.py both build on this module, never on each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from adapters.slack.files import SlackFiles
from adapters.slack.reply import SlackReplies
from adapters.slack.users import UserNames
from bot.messages import MessageHandler
from bot.metrics import Metrics

if TYPE_CHECKING:
    from adapters.slack.assistant import Pane
    from bot.commands import Commands
    from bot.feedback import Feedback


@dataclass(eq=False)
class Intake:
    """The parts of the adapter a listener needs, beyond what bolt hands it."""

    handler: MessageHandler
    replies: SlackReplies
    names: UserNames
    metrics: Metrics
    thread_followups: bool
    feedback: Feedback | None = None  # records clicks on the feedback buttons (feedback.py)
    pane: Pane | None = None  # the assistant pane's parts (assistant.py)
    commands: Commands | None = None  # what the App Home tab shows admins (home.py)
    files: SlackFiles | None = None  # the `files` of an event, as attachments
    # Acknowledged but not yet handed to the core (a name lookup in progress): stop() waits.
    pending: set[asyncio.Task[Any]] = field(default_factory=set)
    # Per conversation: the newest event not yet handed to the core (arrival order).
    arrivals: dict[str, asyncio.Future[None]] = field(default_factory=dict)

    def track(self) -> None:
        """Count the running listener as pending until it finishes."""
        task = asyncio.current_task()
        if task is not None:
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)


def provide(app: AsyncApp, intake: Intake) -> None:
    """Make `intake` a listener argument on every request `app` handles (HTTP and Socket Mode)."""

    async def add_intake(context: AsyncBoltContext, next_: Callable[[], Awaitable[None]]) -> None:
        context["intake"] = intake
        await next_()

    app.use(add_intake)


def installation_workspace(context: AsyncBoltContext) -> str:
    """The workspace a message or command belongs to (prompts, memory, usage): the installation.

    In a Slack Connect channel an event's `team_id`, and a slash command's, is the workspace the
    message came from — another organisation's, or another workspace of a Grid org. bolt's
    authorize result is the installation the request was delivered to (auth.test of the bot
    token; for events the same as `authorizations[0]`), whoever wrote the message, so events,
    slash commands and their replies all resolve one workspace (only a streamed reply's
    `recipient_team_id` is the recipient's own team, as Slack asks). An org-wide Enterprise Grid
    install has no team of its own (`authorizations[0].team_id` is null and one token serves
    every workspace of the org): its workspace is the org's enterprise id (`E…`), so a
    `--workspace` prompt covers the whole org. In an ordinary workspace this is the event's
    `team_id`, as it always was, so stored conversations keep their keys.
    """
    auth = context.authorize_result
    org = _slack_id(context.enterprise_id) or _slack_id(auth.enterprise_id if auth else None)
    if context.is_enterprise_install and org:
        return org
    installed = _slack_id(auth.team_id if auth else None)
    return installed or _slack_id(context.team_id) or org or ""


def _slack_id(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
