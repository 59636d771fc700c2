"""Teams' marks on model answers and its feedback loop.

Every final model answer carries the AI-generated label (the SDK's `add_ai_metadata`: one root
`Message` entity with `additionalType: ["AIGeneratedContent"]`); in personal and group chats,
where Teams shows it, also `channelData.feedbackLoopEnabled` (not `feedbackLoop` as well: Teams
takes one or the other). Channels are left as they are.

A click sends an `invoke` named `message/submitAction` whose `replyToId` is the answer and
whose value holds the reaction (`like` / `dislike`) and, as a JSON string, the text typed. It
is answered with an invoke response (HTTP 200) once the vote is stored; the request has passed
the same authentication and trust checks as a message, and the voter is the activity's sender
as those checks vouch for it.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from microsoft_agents.activity import Activity

from adapters.teams.mapping import tenant_of, user_id_of
from bot.feedback import Click, Feedback
from bot.store import StoreUnavailable

log = logging.getLogger("threadwise.teams")

SUBMIT_ACTION = "message/submitAction"
FEEDBACK_CONVERSATIONS = frozenset({"personal", "groupChat"})
_REACTIONS = {"like": "up", "dislike": "down"}


def mark_answer(activity: Activity, conversation_type: str | None, *, feedback: bool) -> Activity:
    """`activity` (a final model answer's last message) with the AI label and feedback loop."""
    activity.add_ai_metadata()
    if feedback and conversation_type in FEEDBACK_CONVERSATIONS:
        data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
        activity.channel_data = {**data, "feedbackLoopEnabled": True}
    return activity


def _comment(raw: object) -> str:
    """`actionValue.feedback`: a JSON string `{"feedbackText": …}` (plain text accepted)."""
    if not isinstance(raw, str) or not raw.strip():
        return ""
    try:
        data = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(data, dict):
        text = data.get("feedbackText")
        return text if isinstance(text, str) else ""
    return ""


def parse_submit(activity: Activity) -> tuple[str, str] | None:
    """(up|down, comment) from a feedback `message/submitAction`; None when it is not one."""
    value = activity.value if isinstance(activity.value, dict) else {}
    if value.get("actionName") != "feedback":
        return None
    action = value.get("actionValue") if isinstance(value.get("actionValue"), dict) else {}
    reaction = _REACTIONS.get(action.get("reaction"))  # type: ignore[arg-type]
    if reaction is None:
        return None
    return reaction, _comment(action.get("feedback"))


async def on_invoke(
    activity: Activity, feedback: Feedback | None, *, anonymous: bool
) -> web.Response:
    """The invoke response: 200 once a feedback vote is stored (or when there is nothing to do,
    so Teams does not show the person an error); 400 for a feedback invoke that names no answer
    or no reaction; 503 when the store is down (Teams tells the person it failed)."""
    if activity.name != SUBMIT_ACTION:
        return web.json_response({}, status=200)  # no cards or message extensions here
    if feedback is None or not feedback.enabled:
        return web.json_response({}, status=200)
    parsed = parse_submit(activity)
    sender = activity.from_property
    if parsed is None or not activity.reply_to_id or sender is None or not sender.id:
        log.warning("Teams feedback invoke ignored: no reaction, answer or sender")
        return web.json_response({"error": "not a feedback submission"}, status=400)
    value, comment = parsed
    user = user_id_of(activity)
    if anonymous:  # nothing vouches for `from`: as for messages, never a known identity
        user = f"anonymous:{user}"
    assert activity.conversation is not None  # _read_activity checked it
    click = Click(
        platform="teams",
        workspace=tenant_of(activity),
        channel=activity.conversation.id,
        thread=None,
        answer=activity.reply_to_id,
        user_id=user,
        value=value,
        comment=comment,
    )
    try:
        await feedback.vote(click)
    except StoreUnavailable as exc:
        log.error("Teams feedback not recorded: %s", exc)
        return web.json_response({"error": "temporarily unavailable"}, status=503)
    return web.json_response({}, status=200)
