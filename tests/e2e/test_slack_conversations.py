"""A running service answers Slack mentions, follow-ups and DMs once each, and nothing else."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support.fakes.fake_openai import Error, Reply
from tests.support.fakes.fake_slack import app_mention, message, new_ts
from tests.support.slack_e2e import channel, dm, replies, send

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_mention_is_answered_in_its_thread_by_streaming(service, model, slack, fresh):
    model.script(Reply("Redis keeps data in memory."))
    ch, ts = channel(), new_ts()
    assert await send(service, app_mention("<@UBOT> what is Redis?", channel=ch, ts=ts)) == 200
    assert await replies(slack, ch, ts) == ["Redis keeps data in memory."]
    user = model.last_messages()[-1]
    assert user == {"role": "user", "content": "what is Redis?", "name": "Ann_Admin"}
    methods = [m for m in slack.methods() if m != "assistant.threads.setStatus"]
    assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
    assert slack.statuses and slack.statuses[0]["thread_ts"] == ts


async def test_streamed_reply_appends_at_a_paced_rate_in_order(service, model, slack, fresh):
    story = " ".join(f"token{i}" for i in range(60)) + "."
    model.script(Reply(story))
    model.configure(tokens_per_second=30)  # ~2 s of output
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> stream please", channel=ch, ts=ts))
    assert await replies(slack, ch, ts, timeout=30) == [story]
    calls = slack.calls_to("chat.startStream", "chat.appendStream", "chat.stopStream")
    names = [c.method for c in calls]
    assert names[0] == "chat.startStream" and names[-1] == "chat.stopStream"
    assert set(names[1:-1]) == {"chat.appendStream"} and len(names) >= 4
    gaps = [b.t - a.t for a, b in itertools.pairwise(calls[:-1])]
    assert min(gaps) >= 0.45, gaps  # paced, not a call per token
    assert all(c.params["channel"] == ch for c in calls)
    assert calls[0].params["thread_ts"] == ts
    assert calls[0].params["recipient_user_id"] == "U1"
    assert calls[0].params["recipient_team_id"] == "T0FAKE"


async def test_followup_without_mention_is_answered_with_the_thread_memory(
    service, model, slack, fresh
):
    model.script(Reply("Redis is a key-value store."), Reply("Postgres is relational."))
    ch, root = channel(), new_ts()
    await send(service, app_mention("<@UBOT> what is Redis?", channel=ch, ts=root))
    await replies(slack, ch, root)
    await send(service, message("and Postgres?", user="U2", channel=ch, thread_ts=root))
    assert await replies(slack, ch, root, 2) == [
        "Redis is a key-value store.",
        "Postgres is relational.",
    ]
    contents = [m["content"] for m in model.last_messages()]
    assert contents[-3:] == ["what is Redis?", "Redis is a key-value store.", "and Postgres?"]
    assert model.last_messages()[-1]["name"] == "Bob_Stone"


async def test_thread_the_bot_never_joined_gets_no_answer(service, model, slack, fresh):
    ch = channel()
    await send(service, message("unrelated chatter", channel=ch, thread_ts=new_ts()))
    await send(service, message("top-level chatter", channel=ch))
    await asyncio.sleep(1.0)
    assert model.chat_requests == []
    assert slack.bot_messages(ch) == []


async def test_dm_top_level_is_answered_top_level_and_dm_thread_in_the_thread(
    service, model, slack, fresh
):
    model.script(Reply("Hello Ann."), Reply("In the thread."))
    d, top = dm(), new_ts()
    await send(service, message("hi there", channel=d, channel_type="im", ts=top))
    assert await replies(slack, d, None) == ["Hello Ann."]
    assert "name" not in model.last_messages()[-1]  # one speaker in a DM: no name
    assert "chat.startStream" not in slack.methods()  # a top-level DM reply is posted
    await send(service, message("go on", channel=d, channel_type="im", thread_ts=top))
    assert await replies(slack, d, top) == ["In the thread."]
    assert [m["content"] for m in model.last_messages()] == [
        "You are a helpful assistant.",
        "go on",
    ]


async def test_ignored_events_cost_no_model_call_and_no_post(service, model, slack, fresh):
    ch = channel()
    for event in [
        message("Build passed", user=None, channel=ch, subtype="bot_message", bot_id="B9"),
        message("<@UBOT> loop?", user="UBOT", channel=ch, bot_id="BBOT"),
        message(
            "", channel=ch, subtype="message_changed", hidden=True, message={"text": "<@UBOT> x"}
        ),
        message("", channel=ch, subtype="message_deleted", hidden=True, deleted_ts=new_ts()),
        message("<@U2> has joined the channel", user="U2", channel=ch, subtype="channel_join"),
        {"type": "reaction_added", "user": "U1", "reaction": "eyes", "item": {"channel": ch}},
    ]:
        assert await send(service, event) == 200
    await asyncio.sleep(1.0)
    assert model.chat_requests == []
    assert slack.methods() == []


async def test_duplicate_and_retried_deliveries_with_a_slow_model_get_exactly_one_answer(
    service, model, slack, fresh
):
    model.configure(first_token_delay=2.0)
    model.script(Reply("Only once."), Reply("TWICE — a duplicate was answered"))
    ch, ts = channel(), new_ts()
    mention = app_mention("<@UBOT> answer once", channel=ch, ts=ts)
    twin = message("<@UBOT> answer once", channel=ch, ts=ts)
    statuses = await asyncio.gather(
        send(service, mention, event_id="EvDup1"),
        send(service, twin, event_id="EvDup2"),
    )
    await asyncio.sleep(0.5)
    statuses += await asyncio.gather(  # Slack's retries while the model is still thinking
        send(service, mention, event_id="EvDup1", retry_num=1),
        send(service, twin, event_id="EvDup2", retry_num=1),
        send(service, mention, event_id="EvDup1", retry_num=2),
    )
    assert statuses == [200] * 5
    assert await replies(slack, ch, ts, timeout=30) == ["Only once."]
    await asyncio.sleep(1.0)
    assert len(model.chat_requests) == 1
    assert slack.thread_texts(ch, ts) == ["Only once."]


async def test_model_failure_posts_a_short_apology_in_the_thread(service, model, slack, fresh):
    model.script(Error(500, {"error": {"message": "boom", "type": "server_error"}}))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> hello?", channel=ch, ts=ts))
    [apology] = await replies(slack, ch, ts)
    assert apology.startswith("Sorry") and "Traceback" not in apology


async def test_bang_command_in_a_mention_never_reaches_the_model(service, model, slack, fresh):
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> !help", channel=ch, ts=ts))
    [answer] = await replies(slack, ch, ts)
    assert "!reset" in answer
    assert model.chat_requests == []
