"""The Slack adapter over HTTP: signed requests in, IncomingMessages out, replies through Slack.

The core is replaced by a recording `MessageHandler`; Slack's Web API by `FakeSlack`, reached
through the real slack_sdk client.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack import SlackAdapter
from bot.messages import IncomingMessage
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    MemoryCache,
    RecordingHandler,
    app_mention,
    event_callback,
    form,
    message,
    new_ts,
    signed_headers,
    slash_command,
)

SECRET = DEFAULT_SIGNING_SECRET


@dataclass
class Harness:
    slack: FakeSlack
    handler: RecordingHandler
    adapter: SlackAdapter
    cache: MemoryCache
    metrics: Metrics
    url: str
    http: aiohttp.ClientSession

    async def post(self, body: str | bytes, headers: dict[str, str]) -> tuple[int, str, float]:
        started = time.monotonic()
        async with self.http.post(self.url, data=body, headers=headers) as r:
            return r.status, await r.text(), time.monotonic() - started

    async def event(self, event: dict, *, retry_num: int | None = None, event_id=None):
        body = json.dumps(event_callback(event, event_id=event_id))
        return await self.post(body, signed_headers(body, SECRET, retry_num=retry_num))

    async def command(self, text: str, **kw):
        fields = slash_command(text, response_url=self.slack.response_url("cmd"), **kw)
        body = form(fields)
        headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
        status, out, _ = await self.post(body, headers)
        return status, out, fields

    def count(self, kind: str) -> float:
        return self.metrics.events.labels("slack", kind)._value.get()


@asynccontextmanager
async def running(slack: FakeSlack, *, script=None, followups: bool = True):
    handler = RecordingHandler(script)
    cache = MemoryCache()
    metrics = Metrics()
    adapter = SlackAdapter(
        bot_token=slack.token,
        signing_secret=SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=followups,
        handler=handler,
        cache=cache,
        metrics=metrics,
    )
    app = web.Application()
    adapter.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await adapter.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(
                slack, handler, adapter, cache, metrics, str(server.make_url("/slack/events")), http
            )
    finally:
        await adapter.close()
        await server.close()


@pytest.fixture
async def slack():
    users = {"U1": "Ann", "U2": {"display_name": "", "real_name": "Bob Stone"}}
    async with FakeSlack(users=users) as fake:
        yield fake


@pytest.fixture
async def h(slack):
    async with running(slack) as harness:
        yield harness


def say(text: str):
    async def script(msg: IncomingMessage, reply) -> None:
        await reply.typing()
        s = reply.stream()
        await s.append(text)
        await s.finish(text)

    return script


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


# -- signatures and malformed bodies ---------------------------------------------------------


async def test_bad_signature_is_401(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    headers = signed_headers(body, "not-the-secret")
    assert (await h.post(body, headers))[0] == 401


async def test_stale_timestamp_is_401_even_when_correctly_signed(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    headers = signed_headers(body, SECRET, timestamp=int(time.time()) - 301)
    assert (await h.post(body, headers))[0] == 401


async def test_future_timestamp_and_missing_or_garbage_headers_are_401(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    assert (await h.post(body, signed_headers(body, SECRET, timestamp=int(time.time()) + 301)))[
        0
    ] == 401
    assert (await h.post(body, {"Content-Type": "application/json"}))[0] == 401
    garbage = {**signed_headers(body, SECRET), "X-Slack-Request-Timestamp": "yesterday"}
    assert (await h.post(body, garbage))[0] == 401


async def test_tampered_body_is_401(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    headers = signed_headers(body, SECRET)
    assert (await h.post(body.replace("hi", "ho"), headers))[0] == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"{}",
        b'{"type": "event_callback"}',
        b'{"type": "event_callback", "event": "nope"}',
        b'{"type": "url_verification"}',
        b"\xff\xfe\x00garbage",
        b"",
        b"just=a&form=body",
    ],
)
async def test_malformed_but_signed_body_is_400(h, body):
    status, _, _ = await h.post(body, signed_headers(body, SECRET))
    assert status == 400
    assert h.handler.submitted == []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "event",
                        "text",
                        "user",
                        "channel",
                        "ts",
                        "thread_ts",
                        "subtype",
                        "command",
                        "challenge",
                        "team_id",
                        "x",
                    ]
                ),
                children,
                max_size=6,
            )
        ),
        max_leaves=12,
    )
)
async def test_no_signed_body_ever_gets_a_500(h, payload):
    body = json.dumps(payload)
    status, _, _ = await h.post(body, signed_headers(body, SECRET))
    assert status in (200, 400)


async def test_event_fields_of_the_wrong_type_are_ignored_not_crashed(h):
    for event in [
        {
            "type": "message",
            "user": ["U1"],
            "text": "x",
            "ts": "1.1",
            "channel": "C1",
            "channel_type": "im",
        },
        {
            "type": "message",
            "user": "U1",
            "text": {"a": 1},
            "ts": "1.1",
            "channel": "D1",
            "channel_type": "im",
        },
        {"type": "app_mention", "user": "U1", "text": "<@UBOT>", "ts": 12, "channel": "C1"},
    ]:
        assert (await h.event(event))[0] == 200
    await h.slack.settle(0.2)
    assert h.handler.submitted == []


# -- acknowledging fast ----------------------------------------------------------------------


async def test_ack_does_not_wait_for_the_name_lookup_or_the_reply(slack):
    async def slow_model(msg, reply):
        import asyncio

        await asyncio.sleep(5)

    slack.fail("users.info", error="user_not_found", delay=4)
    async with running(slack, script=slow_model) as h:
        status, _, _ = await h.event(app_mention("<@UBOT> hi", user="U2"))
        assert status == 200
        # The lookup answers 4 s after it is asked: acked first means nothing handed over yet.
        assert h.handler.submitted == []  # still looking the name up after the ack


# -- names -----------------------------------------------------------------------------------


async def test_display_names_are_cached_per_workspace_and_user(h):
    await h.event(app_mention("<@UBOT> one", ts=new_ts()))
    await h.handler.wait_for(1)
    await h.event(app_mention("<@UBOT> two", ts=new_ts()))
    await h.handler.wait_for(2)
    assert len(h.slack.calls_to("users.info")) == 1
    assert h.cache.data == {"slack:user:T0FAKE:U1": "Ann"}
    assert h.cache.ttls["slack:user:T0FAKE:U1"] == 3600


async def test_unknown_user_falls_back_to_the_id_and_is_not_cached(h):
    await h.event(app_mention("<@UBOT> hi", user="U404"))
    [msg] = await h.handler.wait_for(1)
    assert msg.user_name == "U404"
    assert h.cache.data == {}


# -- replies through the adapter -------------------------------------------------------------


async def test_mention_is_answered_in_its_thread_with_status_then_stream(slack):
    async with running(slack, script=say("Redis is an in-memory store.")) as h:
        ts = new_ts()
        await h.event(app_mention("<@UBOT> what is Redis?", ts=ts))
        await h.handler.wait_for(1)
        assert slack.thread_texts("C1", ts) == ["Redis is an in-memory store."]
        assert slack.methods() == [
            "assistant.threads.setStatus",
            "chat.startStream",
            "chat.stopStream",
        ]


async def test_top_level_dm_is_answered_at_top_level(slack):
    async with running(slack, script=say("Hi Ann!")) as h:
        await h.event(message("hello", channel="D1", channel_type="im"))
        await h.handler.wait_for(1)
        assert slack.thread_texts("D1", None) == ["Hi Ann!"]


# -- slash command ---------------------------------------------------------------------------


async def test_slash_command_is_acked_empty_and_answered_ephemerally(slack):
    async def answer(msg, reply):
        await reply.send(f"You ran `{msg.text}`")

    async with running(slack, script=answer) as h:
        status, out, fields = await h.command("prompt show")
        assert (status, out) == (200, "")
        [msg] = await h.handler.wait_for(1)
        assert msg.text == "!prompt show"
        assert msg.message_id == fields["trigger_id"]
        assert (msg.channel, msg.thread, msg.user_id, msg.user_name) == ("C1", None, "U1", "Ann")
        assert msg.principal == "slack:U1"
        assert slack.responses == [
            {"rid": "cmd", "text": "You ran `!prompt show`", "response_type": "ephemeral"}
        ]
        assert h.count("slash_command") == 1


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("!usage", "!usage"),
        ("  ! reset ", "!reset"),
        ("", "!help"),
        (
            "prompt set --workspace Use the word payload",
            "!prompt set --workspace Use the word payload",
        ),
        ("prompt set Ask <@U2> & co", "!prompt set Ask @Bob Stone & co"),
    ],
)
async def test_slash_command_arguments_become_a_bang_command(h, args, text):
    status, _, _ = await h.command(args)
    assert status == 200
    [msg] = await h.handler.wait_for(1)
    assert msg.text == text


async def test_slash_command_in_a_dm_is_a_dm(h):
    await h.command("help", channel="D1")
    [msg] = await h.handler.wait_for(1)
    assert msg.is_dm


# -- Slack unavailable -----------------------------------------------------------------------


async def test_events_get_503_while_the_bot_cannot_learn_who_it_is(slack):
    slack.fail("auth.test", status=500, times=None)
    handler = RecordingHandler()
    adapter = SlackAdapter(
        bot_token=slack.token,
        signing_secret=SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=True,
        handler=handler,
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    app = web.Application()
    adapter.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await adapter.start()  # Slack down at start-up is not fatal
        body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
        async with aiohttp.ClientSession() as http:
            url = str(server.make_url("/slack/events"))
            async with http.post(url, data=body, headers=signed_headers(body, SECRET)) as r:
                assert r.status == 503
            slack.reset()
            async with http.post(url, data=body, headers=signed_headers(body, SECRET)) as r:
                assert r.status == 200
        await handler.wait_for(1)
    finally:
        await adapter.close()
        await server.close()


async def test_a_revoked_token_stops_start_up(slack):
    adapter = SlackAdapter(
        bot_token="xoxb-revoked",
        signing_secret=SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=True,
        handler=RecordingHandler(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    with pytest.raises(RuntimeError, match="SLACK_BOT_TOKEN"):
        await adapter.start()


def test_http_mode_needs_a_signing_secret():
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(
            bot_token="xoxb-x",
            signing_secret=None,
            app_token=None,
            api_url="http://127.0.0.1:9/api/",
            thread_followups=True,
            handler=RecordingHandler(),
            cache=MemoryCache(),
            metrics=Metrics(),
        )


def test_routes_name_the_transport():
    common = dict(
        bot_token="xoxb-x",
        api_url="http://127.0.0.1:9/api/",
        thread_followups=True,
        handler=RecordingHandler(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    http = SlackAdapter(signing_secret="s", app_token=None, **common)
    socket = SlackAdapter(signing_secret=None, app_token="xapp-1", **common)
    assert http.routes() == ["POST /slack/events"]
    assert socket.routes() == ["Socket Mode (outbound WebSocket to Slack)"]
    app = web.Application()
    socket.mount(app)
    assert len(app.router.routes()) == 0
