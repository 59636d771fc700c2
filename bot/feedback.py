"""Feedback on answers (👍/👎 and a comment): what adapters hand over when someone votes.

Adapters turn a verified click (Slack's signed `block_actions`, Teams' `message/submitAction`
invoke) into `Feedback.vote()`; the vote is written then, never on the answer path. The answer's
deployment and prompt scope come with the click where the platform carries them back (Slack's
button value, which the bot wrote into its own message); otherwise they are the ones in effect
for that conversation at the click. `FEEDBACK=false` turns the buttons and the recording off.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from bot.messages import AnswerInfo, conversation_key
from bot.metrics import Metrics
from bot.prompts import GLOBAL, Prompts, channel_scope, workspace_scope
from bot.store import Store
from bot.store.votes import COMMENT_MAX_CHARS, VALUES, Vote

log = logging.getLogger("threadwise.feedback")

THANKS = "Thanks for the feedback!"


@dataclass(frozen=True, slots=True)
class Click:
    """One verified vote, as the adapter read it from the platform."""

    platform: str
    workspace: str
    channel: str
    thread: str | None
    answer: str  # the platform's id of the answer message
    user_id: str
    value: str  # "up" | "down"
    comment: str = ""
    info: AnswerInfo | None = None


class Feedback:
    def __init__(
        self,
        *,
        store: Store,
        prompts: Prompts,
        metrics: Metrics,
        deployment: str,
        enabled: bool = True,
    ) -> None:
        self.store = store
        self.prompts = prompts
        self.metrics = metrics
        self.deployment = deployment
        self.enabled = enabled

    async def vote(self, click: Click) -> Vote | None:
        """Record `click` (replacing that person's earlier vote on the answer); returns it.

        Raises ValueError for a value that is not a vote, StoreUnavailable when Redis is down.
        """
        if click.value not in VALUES:
            raise ValueError(f"not a vote: {click.value!r}")
        scopes: Sequence[str] = [
            channel_scope(click.platform, click.workspace, click.channel),
            workspace_scope(click.platform, click.workspace),
        ]
        info = click.info
        if info is None:
            eff = await self.prompts.effective([*scopes, GLOBAL])
            info = AnswerInfo(self.deployment, eff.scope)
        vote = Vote(
            platform=click.platform,
            workspace_scope=scopes[1],
            channel_scope=scopes[0],
            conversation=conversation_key(
                click.platform, click.workspace, click.channel, click.thread
            ),
            answer=click.answer,
            user=f"{click.platform}:{click.workspace}:{click.user_id}",
            value=click.value,
            comment=click.comment.strip()[:COMMENT_MAX_CHARS],
            deployment=info.deployment,
            prompt_scope=info.prompt_scope,
        )
        old = await self.store.record_vote(vote)
        self.metrics.votes.labels(click.platform, click.value).inc()
        if old is not None and old.value != vote.value:
            self.metrics.votes_changed.labels(click.platform).inc()
        log.info(
            "feedback recorded",
            extra={
                "value": vote.value,
                "changed": old is not None,
                "has_comment": bool(vote.comment),
            },
        )
        return old
