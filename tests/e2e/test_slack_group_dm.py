"""Slack group DMs (`mpim`) through a running `threadwise serve`, and a clean start.

A group DM is a conversation among several people that includes the bot (the manifest
subscribes to `message.mpim`). It is treated like a channel, not like a 1:1 DM: the bot answers
a mention, in a thread, and later replies in that thread without a mention; what people say to
each other elsewhere in the group DM is not for the bot.
"""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from tests.support.fakes.fake_openai import FakeOpenAI, Reply
from tests.support.fakes.fake_slack import DEFAULT_SIGNING_SECRET, FakeSlack, app_mention, message
from tests.support.fakes.fake_slack import new_ts as ts
from tests.support.helpers import ServeProcess, delete_prefix
from tests.support.slack_e2e import replies, send

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(redis_url):
    prefix = f"tw-mpim-{uuid.uuid4().hex[:8]}:"
    users = {"U1": "Ann", "U2": "Bob"}
    async with FakeOpenAI() as model, FakeSlack(users=users) as slack:
        env = {
            "SLACK_BOT_TOKEN": slack.token,  # in the environment, where bolt also looks for it
            "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "test-key",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "LLM_MAX_RETRIES": "0",
            "LOG_LEVEL": "DEBUG",
        }
        try:
            async with ServeProcess(env) as svc:
                yield svc, model, slack
        finally:
            await delete_prefix(redis_url, prefix)


def group_dm() -> str:
    return "G" + uuid.uuid4().hex[:9].upper()


def mpim(text: str, **kw) -> dict:
    return message(text, channel_type="mpim", **kw)


async def test_group_dm_mention_is_answered_in_a_thread_and_its_replies_need_no_mention(stack):
    svc, model, slack = stack
    model.reset()
    model.script(Reply("Standup is at ten."), Reply("Yes, every weekday."))
    g, root = group_dm(), ts()
    # Slack delivers a mention in a group DM twice: as app_mention and as message.mpim.
    assert await send(svc, app_mention("<@UBOT> when is standup?", channel=g, ts=root)) == 200
    assert await send(svc, mpim("<@UBOT> when is standup?", channel=g, ts=root)) == 200
    assert await replies(slack, g, root) == ["Standup is at ten."]
    assert await send(svc, mpim("every day?", user="U2", channel=g, thread_ts=root)) == 200
    assert await replies(slack, g, root, 2) == ["Standup is at ten.", "Yes, every weekday."]
    contents = [m["content"] for m in model.last_messages()]
    assert contents[-3:] == ["when is standup?", "Standup is at ten.", "every day?"]
    assert model.last_messages()[-1]["name"] == "Bob"  # several people: the speaker is named
    assert len(model.chat_requests) == 2  # the twin delivery was answered once


async def test_group_dm_chatter_without_a_mention_is_not_for_the_bot(stack):
    svc, model, slack = stack
    model.reset()
    model.script(Reply("Here."))
    g = group_dm()
    assert await send(svc, mpim("lunch at noon?", channel=g)) == 200
    assert await send(svc, mpim("sure", user="U2", channel=g, thread_ts=ts())) == 200
    # Then a mention in the same group DM: once it is answered, the chatter before it is known
    # to have been dropped rather than still in flight.
    root = ts()
    assert await send(svc, app_mention("<@UBOT> are you there?", channel=g, ts=root)) == 200
    assert await replies(slack, g, root) == ["Here."]
    assert len(model.chat_requests) == 1
    assert [m.thread_ts for m in slack.bot_messages(g)] == [root]


async def test_serve_starts_without_bolt_warning_that_the_token_will_be_unused(stack):
    svc, _, _ = stack
    out = svc.output()
    assert "slack connected" in out, out
    assert "will be unused" not in out, out
