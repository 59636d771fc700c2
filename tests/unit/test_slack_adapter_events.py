"""Events API requests become IncomingMessages for the right thread; ignored events never do."""

from __future__ import annotations

import json

from bot.messages import IncomingMessage
from tests.support.fakes.fake_slack import (
    app_mention,
    form,
    message,
    new_ts,
    signed_headers,
)
from tests.support.slack_adapter_harness import SECRET, h, running, slack

__all__ = ["h", "slack"]  # the fixtures


# -- Events API basics -----------------------------------------------------------------------


async def test_url_verification_is_answered_with_the_challenge(h):
    body = json.dumps(
        {
            "token": "t",
            "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification",
        }
    )
    status, out, _ = await h.post(body, signed_headers(body, SECRET))
    assert status == 200
    assert json.loads(out) == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


async def test_ssl_check_and_unhandled_request_types_are_acknowledged(h):
    for body in [
        "token=legacy&ssl_check=1",
        form({"payload": json.dumps({"type": "block_actions", "actions": [{"action_id": "x"}]})}),
        json.dumps({"type": "app_rate_limited", "team_id": "T0FAKE", "minute_rate_limited": 1}),
    ]:
        ctype = "application/json" if body.startswith("{") else "application/x-www-form-urlencoded"
        status, _, _ = await h.post(body, signed_headers(body, SECRET, content_type=ctype))
        assert status == 200, body
    assert h.handler.submitted == []


async def test_channel_mention_becomes_an_incoming_message_for_its_thread(h):
    ts = new_ts()
    status, _, _ = await h.event(
        app_mention("<@UBOT> what is <@U2>'s role?", ts=ts), event_id="Ev1"
    )
    assert status == 200
    [msg] = await h.handler.wait_for(1)
    assert msg == IncomingMessage(
        platform="slack",
        workspace="T0FAKE",
        channel="C1",
        thread=ts,
        user_id="U1",
        user_name="Ann",
        text="what is @Bob Stone's role?",
        message_id=ts,
        is_dm=False,
        mentions_bot=True,
        event_id="Ev1",
    )
    assert msg.principal == "slack:U1"
    assert msg.conversation_key == f"slack:T0FAKE:C1:{ts}"


async def test_mention_inside_a_thread_keeps_the_thread_root(h):
    root, ts = new_ts(), new_ts()
    await h.event(app_mention("<@UBOT> and then?", ts=ts, thread_ts=root))
    [msg] = await h.handler.wait_for(1)
    assert (msg.thread, msg.message_id) == (root, ts)


async def test_dm_at_top_level_has_no_thread_and_inside_a_thread_has_one(h):
    top, inner = new_ts(), new_ts()
    await h.event(message("hello", channel="D1", channel_type="im", ts=top))
    await h.event(message("more", channel="D1", channel_type="im", ts=inner, thread_ts=top))
    first, second = await h.handler.wait_for(2)
    assert (first.is_dm, first.thread, first.conversation_key) == (True, None, "slack:T0FAKE:D1")
    assert (second.is_dm, second.thread) == (True, top)
    assert second.conversation_key == f"slack:T0FAKE:D1:{top}"


async def test_thread_reply_without_mention_is_a_followup_for_the_core_to_decide(h):
    root = new_ts()
    await h.event(message("what about Postgres?", user="U2", ts=new_ts(), thread_ts=root))
    [msg] = await h.handler.wait_for(1)
    assert (msg.thread, msg.mentions_bot, msg.user_name) == (root, False, "Bob Stone")


async def test_followups_off_drops_thread_replies_without_mention(slack):
    async with running(slack, followups=False) as h:
        status, _, _ = await h.event(message("hm", ts=new_ts(), thread_ts=new_ts()))
        assert status == 200
        await h.event(app_mention("<@UBOT> now", ts=new_ts(), thread_ts=new_ts()))
        msgs = await h.handler.wait_for(1)
        await slack.settle(0.2)
        assert len(h.handler.submitted) == 1 and msgs[0].mentions_bot


IGNORED = [
    message("lunch?"),
    message("Build passed", user=None, subtype="bot_message", bot_id="B9"),
    message("<@UBOT> ping", user="U9", bot_id="B9"),
    message("my own reply", user="UBOT", thread_ts="1700000100.000100"),
    message("", subtype="message_changed", hidden=True, message={"text": "<@UBOT> x"}),
    message("", subtype="message_deleted", hidden=True, deleted_ts="1700000100.000100"),
    message("<@U1> has joined the channel", subtype="channel_join"),
    message("waves", subtype="me_message"),
    {
        "type": "reaction_added",
        "user": "U1",
        "reaction": "+1",
        "item": {"type": "message", "channel": "C1", "ts": "1.2"},
    },
    {"type": "member_joined_channel", "user": "U1", "channel": "C1"},
]


async def test_ignored_events_are_acknowledged_counted_and_never_reach_the_core(h):
    for event in IGNORED:
        status, _, _ = await h.event(event)
        assert status == 200, event
    await h.slack.settle(0.2)
    assert h.handler.submitted == []
    assert h.count("ignored") == len(IGNORED)
    assert h.slack.calls_to("users.info") == []  # dropped before any work


async def test_mention_delivered_as_app_mention_and_message_and_retried_shares_one_dedupe_key(h):
    ts = new_ts()
    await h.event(app_mention("<@UBOT> once please", ts=ts), event_id="EvA")
    await h.event(message("<@UBOT> once please", ts=ts), event_id="EvB")
    await h.event(app_mention("<@UBOT> once please", ts=ts), event_id="EvA", retry_num=1)
    msgs = await h.handler.wait_for(3)
    assert len({(m.conversation_key, m.message_id) for m in msgs}) == 1
    assert len({m.conversation_key for m in msgs}) == 1
    assert {m.text for m in msgs} == {"once please"}
