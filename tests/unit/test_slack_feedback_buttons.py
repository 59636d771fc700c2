"""Which Slack messages carry the feedback buttons: the last of a final model answer, only."""

from __future__ import annotations

import pytest

from adapters.slack.api import make_client
from adapters.slack.feedback import parse_value
from adapters.slack.reply import SlackReplies, SlackReplyTarget
from bot.messages import AnswerInfo
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import FakeSlack

ROOT = "1700000100.000100"
INFO = AnswerInfo("gpt-4o", "slack:T0FAKE:C1")


@pytest.fixture
async def slack():
    async with FakeSlack() as fake:
        yield fake


def target(slack: FakeSlack, *, feedback: bool = True, thread_ts: str | None = ROOT, **knobs):
    replies = SlackReplies(
        make_client(slack.token, slack.api_url), Metrics(), feedback=feedback, **knobs
    )
    return SlackReplyTarget(
        replies, channel="C1", thread_ts=thread_ts, message_ts=ROOT, team_id="T0FAKE", user_id="U1"
    )


async def answer(reply, text: str, info: AnswerInfo | None = INFO) -> None:
    s = reply.stream()
    await s.append(text)
    await s.finish(text, answer=info)


async def test_a_streamed_answer_gets_the_buttons_with_stop_stream_and_no_extra_call(slack):
    await answer(target(slack, stream_interval=0.01), "The answer.")
    [m] = slack.bot_messages()
    buttons = slack.feedback_buttons(m)
    assert buttons is not None and m.text == "The answer."
    assert parse_value(buttons["positive_button"]["value"]) == ("up", INFO)
    assert parse_value(buttons["negative_button"]["value"]) == ("down", INFO)
    assert "chat.update" not in slack.methods()


async def test_a_long_answer_split_in_messages_has_the_buttons_on_the_last_only(slack):
    text = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(6))
    await answer(target(slack, thread_ts=None, message_limit=400), text)
    msgs = slack.bot_messages()
    assert len(msgs) > 1
    assert [slack.feedback_buttons(m) is not None for m in msgs] == [False] * (len(msgs) - 1) + [
        True
    ]
    last = msgs[-1].blocks[0]
    assert last["type"] == "markdown" and last["text"] == msgs[-1].text


async def test_no_buttons_when_feedback_is_off_or_the_reply_is_not_a_model_answer(slack):
    await answer(target(slack, feedback=False), "Off.")
    await answer(target(slack), "A notice.", info=None)
    await target(slack).send("An apology.")
    assert [slack.feedback_buttons(m) for m in slack.bot_messages()] == [None, None, None]


async def test_a_refused_stream_answer_still_ends_with_the_buttons(slack):
    slack.fail("chat.startStream", error="not_allowed")
    await answer(target(slack, update_interval=0.01), "Posted instead.")
    [m] = slack.bot_messages()
    assert m.text == "Posted instead." and slack.feedback_buttons(m) is not None


def test_button_values_that_are_not_ours_are_refused():
    assert parse_value("positive_feedback") == ("up", None)
    for bad in (None, 3, "", "{", '{"v": "maybe"}', "[]", '{"v": "negative_feedback", "d": 1}'):
        got = parse_value(bad)
        assert got is None or got == ("down", None)
