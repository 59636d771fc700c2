"""Socket Mode: the adapter connects out to a local server speaking Slack's envelope protocol."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest

from adapters.slack import SlackAdapter
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import (
    FakeSlack,
    MemoryCache,
    RecordingHandler,
    app_mention,
    event_callback,
    message,
    new_ts,
    slash_command,
)
from tests.support.fakes.fake_socket_mode import FakeSocketMode


@asynccontextmanager
async def connected(script=None):
    async with FakeSlack(users={"U1": "Ann"}) as slack, FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        handler = RecordingHandler(script)
        adapter = SlackAdapter(
            bot_token=slack.token,
            signing_secret=None,
            app_token=slack.app_token,
            api_url=slack.api_url,
            thread_followups=True,
            handler=handler,
            cache=MemoryCache(),
            metrics=Metrics(),
        )
        await adapter.start()
        try:
            await sm.wait_connected()
            yield slack, sm, handler, adapter
        finally:
            await adapter.close()


async def answer(msg, reply):
    await reply.send(f"echo: {msg.text}")


async def test_start_opens_a_connection_with_the_app_token_and_gets_hello():
    async with connected() as (slack, sm, _, adapter):
        assert slack.calls_to("apps.connections.open")[0].ok
        assert sm.paths[0].startswith("/link/?ticket=")
        assert adapter.routes() == ["Socket Mode (outbound WebSocket to Slack)"]


async def test_event_envelope_is_acked_by_envelope_id_at_once_and_answered():
    async with connected(answer) as (slack, sm, handler, _):
        ts = new_ts()
        eid = await sm.send_event(event_callback(app_mention("<@UBOT> hi there", ts=ts)))
        ack = await sm.wait_ack(eid)
        assert ack == {"envelope_id": eid}
        [msg] = await handler.wait_for(1)
        assert (msg.text, msg.thread, msg.user_name) == ("hi there", ts, "Ann")
        await slack.wait_for(lambda s: s.thread_texts("C1", ts) == ["echo: hi there"])


async def test_retried_envelope_and_the_message_twin_carry_the_same_dedupe_key():
    async with connected() as (_, sm, handler, _adapter):
        ts = new_ts()
        a = await sm.send_event(event_callback(app_mention("<@UBOT> q", ts=ts), event_id="Ev1"))
        b = await sm.send_event(event_callback(message("<@UBOT> q", ts=ts), event_id="Ev2"))
        c = await sm.send_event(
            event_callback(app_mention("<@UBOT> q", ts=ts), event_id="Ev1"),
            retry_attempt=1,
            retry_reason="timeout",
        )
        for eid in (a, b, c):
            await sm.wait_ack(eid)
        msgs = await handler.wait_for(3)
        assert len({(m.conversation_key, m.message_id) for m in msgs}) == 1


async def test_ignored_events_are_acked_too():
    async with connected() as (_, sm, handler, _adapter):
        eid = await sm.send_event(event_callback(message("lunch?")))
        await sm.wait_ack(eid)
        eid = await sm.send_event(
            event_callback({"type": "reaction_added", "user": "U1", "reaction": "eyes"})
        )
        await sm.wait_ack(eid)
        assert handler.submitted == []


async def test_slash_command_envelope_is_acked_and_answered_ephemerally():
    async with connected(answer) as (slack, sm, handler, _):
        fields = slash_command("usage", response_url=slack.response_url("sm"))
        eid = await sm.send_slash_command(fields)
        ack = await sm.wait_ack(eid)
        assert ack["envelope_id"] == eid
        [msg] = await handler.wait_for(1)
        assert msg.text == "!usage"
        await slack.wait_for(lambda s: len(s.responses) == 1)
        assert slack.responses[0]["response_type"] == "ephemeral"
        assert slack.responses[0]["text"] == "echo: !usage"


async def test_disconnect_request_makes_the_client_reconnect():
    async with connected() as (slack, sm, handler, _):
        await sm.send_disconnect()
        await slack.wait_for(lambda s: len(s.calls_to("apps.connections.open")) == 2)
        await sm._wait(lambda: len(sm.connections) == 2 and sm.open_connections, 10, "reconnect")
        eid = await sm.send_event(event_callback(app_mention("<@UBOT> still there?")))
        await sm.wait_ack(eid)
        await handler.wait_for(1)


async def test_close_disconnects():
    async with connected() as (_, sm, _handler, adapter):
        await adapter.close()
        await sm._wait(lambda: not sm.open_connections, 5, "the connection to close")


async def test_unreachable_socket_mode_fails_start_with_the_setting_named():
    async with FakeSlack() as slack:
        slack.fail("apps.connections.open", error="invalid_auth", times=None)
        adapter = SlackAdapter(
            bot_token=slack.token,
            signing_secret=None,
            app_token="xapp-wrong",
            api_url=slack.api_url,
            thread_followups=True,
            handler=RecordingHandler(),
            cache=MemoryCache(),
            metrics=Metrics(),
        )
        with pytest.raises(RuntimeError, match="SLACK_APP_TOKEN"):
            await adapter.start()
        await adapter.close()
