"""Feedback buttons under Slack answers, and the clicks on them (signed `block_actions`).

Every final model answer ends with a `context_actions` block holding `feedback_buttons`
(`feedback_block`, attached by the sink in `adapters.slack.stream`). The buttons' values carry
the vote and what produced the answer (deployment, prompt scope): Slack sends them back exactly
as the bot wrote them, inside a request signed like events (checked in ingress.py), so nothing
in them comes from the person who clicked. A click is acknowledged at once, recorded once per
person per answer (a second click replaces the first) and thanked with an ephemeral message.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext

from bot.feedback import THANKS, Click
from bot.messages import AnswerInfo
from bot.store import StoreUnavailable

if TYPE_CHECKING:
    from adapters.slack.intake import Intake

log = logging.getLogger("threadwise.slack")

ACTION_ID = "threadwise_feedback"
_VALUES = {"positive_feedback": "up", "negative_feedback": "down"}
_VALUE_MAX = 2_000  # Slack's limit for a button value


def _value(kind: str, answer: AnswerInfo) -> str:
    value = json.dumps(
        {"v": kind, "d": answer.deployment, "s": answer.prompt_scope}, separators=(",", ":")
    )
    return value if len(value) <= _VALUE_MAX else json.dumps({"v": kind})


def feedback_block(answer: AnswerInfo) -> dict[str, Any]:
    """The block that ends a model answer: 👍 / 👎, Slack's own feedback buttons."""

    def button(emoji: str, kind: str) -> dict[str, Any]:
        return {"text": {"type": "plain_text", "text": emoji}, "value": _value(kind, answer)}

    return {
        "type": "context_actions",
        "elements": [
            {
                "type": "feedback_buttons",
                "action_id": ACTION_ID,
                "positive_button": button("👍", "positive_feedback"),
                "negative_button": button("👎", "negative_feedback"),
            }
        ],
    }


def parse_value(raw: object) -> tuple[str, AnswerInfo | None] | None:
    """(up|down, what produced the answer) from a button value; None when it is not ours."""
    if not isinstance(raw, str):
        return None
    if raw in _VALUES:  # a bare value, as Slack's own examples write them
        return _VALUES[raw], None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("v") not in _VALUES:
        return None
    d, s = data.get("d"), data.get("s")
    info = AnswerInfo(d, s) if isinstance(d, str) and isinstance(s, str) else None
    return _VALUES[data["v"]], info


def register(app: AsyncApp) -> None:
    app.action(ACTION_ID)(on_feedback)


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


async def on_feedback(
    ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: AsyncBoltContext
) -> None:
    from adapters.slack.intake import installation_workspace  # (intake → reply → stream → here)

    await ack()  # within Slack's 3 seconds, whatever follows
    intake: Intake = context["intake"]
    feedback = intake.feedback
    if feedback is None or not feedback.enabled:
        return
    parsed = parse_value(action.get("value"))
    message = body.get("message") if isinstance(body.get("message"), dict) else {}
    container = body.get("container") if isinstance(body.get("container"), dict) else {}
    channel = _str((body.get("channel") or {}).get("id")) or _str(container.get("channel_id"))
    ts = _str(message.get("ts")) or _str(container.get("message_ts"))
    user = _str((body.get("user") or {}).get("id"))
    if parsed is None or not channel or not ts or not user:
        log.warning("slack feedback click ignored: not one of our buttons")
        return
    value, info = parsed
    thread = _str(message.get("thread_ts")) or _str(container.get("thread_ts"))
    click = Click(
        platform="slack",
        workspace=installation_workspace(context),
        channel=channel,
        thread=thread if thread != ts else None,
        answer=ts,
        user_id=user,
        value=value,
        info=info,
    )
    try:
        await feedback.vote(click)
    except StoreUnavailable as exc:
        intake.metrics.errors.labels("store").inc()
        log.error("feedback not recorded: %s", exc)
        return
    try:
        await intake.replies.client.chat_postEphemeral(
            channel=channel, user=user, thread_ts=thread, text=THANKS
        )
    except Exception as e:
        intake.replies.failure("chat.postEphemeral", e)
