"""Teams' feedback invoke, read and answered: what counts as a vote, and a store outage."""

from __future__ import annotations

import json

from microsoft_agents.activity import Activity

from adapters.teams.feedback import on_invoke, parse_submit
from bot.store import StoreUnavailable


def invoke(value: object, reply_to: str | None = "1800") -> Activity:
    body = {
        "type": "invoke",
        "name": "message/submitAction",
        "channelId": "msteams",
        "from": {"id": "29:1", "aadObjectId": "aad-1"},
        "conversation": {"id": "a:1", "conversationType": "personal", "tenantId": "t1"},
        "value": value,
    }
    if reply_to is not None:
        body["replyToId"] = reply_to
    return Activity.model_validate(body)


def test_reactions_and_their_text_are_read_and_anything_else_is_not_a_vote():
    text = json.dumps({"feedbackText": "too long"})
    liked = {"actionName": "feedback", "actionValue": {"reaction": "like", "feedback": text}}
    assert parse_submit(invoke(liked)) == ("up", "too long")
    plain = {"actionName": "feedback", "actionValue": {"reaction": "dislike", "feedback": "meh"}}
    assert parse_submit(invoke(plain)) == ("down", "meh")
    for bad in (None, {}, {"actionName": "other"}, {"actionName": "feedback", "actionValue": 1}):
        assert parse_submit(invoke(bad)) is None


class Down:
    enabled = True

    async def vote(self, click):
        raise StoreUnavailable("Redis: down")


class Kept:
    enabled = True

    def __init__(self) -> None:
        self.clicks = []

    async def vote(self, click):
        self.clicks.append(click)


async def test_a_store_outage_is_a_503_and_a_vote_a_200_naming_the_answer_and_voter():
    liked = {"actionName": "feedback", "actionValue": {"reaction": "like"}}
    assert (await on_invoke(invoke(liked), Down(), anonymous=False)).status == 503
    kept = Kept()
    assert (await on_invoke(invoke(liked), kept, anonymous=False)).status == 200
    [click] = kept.clicks
    assert (click.answer, click.user_id, click.workspace, click.value) == (
        "1800",
        "aad-1",
        "t1",
        "up",
    )
    assert (await on_invoke(invoke(liked, reply_to=None), kept, anonymous=False)).status == 400
    assert (await on_invoke(invoke(liked), None, anonymous=False)).status == 200  # FEEDBACK=false
