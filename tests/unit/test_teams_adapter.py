"""The Teams adapter over HTTP: acks, routing, replies, splitting, welcome, connector failures.

The adapter runs in-process (anonymous mode, as with local test clients) against the fake
connector; a recording handler stands in for the core's responder.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from adapters.teams import TeamsAdapter
from adapters.teams.connector import Outbound
from adapters.teams.stream import MAX_MESSAGE_LENGTH, TeamsSink
from adapters.text import utf16_length
from bot.metrics import Metrics
from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fixtures.teams.harness import (
    MemoryCache,
    RecordingHandler,
    load,
    teams_server,
)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(Outbound, "backoff", 0.01)
    monkeypatch.setattr(TeamsSink, "interval", 0.05)


@pytest.fixture
async def connector():
    async with FakeConnector() as fake:
        yield fake


def counter(metrics: Metrics, kind: str) -> float:
    return metrics.events.labels("teams", kind)._value.get()


async def test_message_is_acknowledged_at_once_and_answered_later(connector):
    gate = asyncio.Event()

    async def slow_model(msg, reply):
        await gate.wait()
        await reply.send("Paris.")

    handler = RecordingHandler(slow_model)
    async with teams_server(handler) as (client, _):
        resp = await client.post(
            "/api/messages", json=load("group_chat_mention", service_url=connector.url)
        )
        assert resp.status == 200
        # Answered while the "model" is held at the gate: the 200 did not wait for the reply.
        assert connector.activities == []  # nothing posted while the "model" works
        gate.set()
        await handler.drain()
    [reply] = connector.messages()
    assert reply.text == "Paris."
    assert reply.activity["textFormat"] == "markdown"


async def test_channel_reply_goes_into_the_same_reply_chain(connector):
    async def answer(msg, reply):
        await reply.send("Here is the checklist.")

    handler = RecordingHandler(answer)
    activity = load("channel_mention", service_url=connector.url)
    async with teams_server(handler) as (client, _):
        assert (await client.post("/api/messages", json=activity)).status == 200
        await handler.drain()
    [reply] = connector.messages()
    assert reply.conversation_id == activity["conversation"]["id"]  # …;messageid=<root>
    assert ";messageid=1763631845402" in reply.conversation_id
    assert reply.reply_to_id == activity["id"]
    assert reply.activity["replyToId"] == activity["id"]
    assert reply.activity["from"]["id"] == activity["recipient"]["id"]
    assert reply.activity["recipient"]["id"] == activity["from"]["id"]


async def test_group_chat_is_answered_with_one_message_not_a_stream(connector):
    async def model(msg, reply):
        await reply.typing()
        stream = reply.stream()
        for word in ["Agenda: ", "wins, ", "pains, ", "actions."]:
            await stream.append(word)
            await asyncio.sleep(0.02)
        await stream.finish("Agenda: wins, pains, actions.")

    handler = RecordingHandler(model)
    async with teams_server(handler) as (client, _):
        await client.post(
            "/api/messages", json=load("group_chat_mention", service_url=connector.url)
        )
        await handler.drain()
    kinds = [a.type for a in connector.activities]
    assert kinds == ["typing", "message"]
    assert all(a.stream is None for a in connector.activities)
    assert connector.messages()[0].text == "Agenda: wins, pains, actions."


async def test_typing_indicator_is_a_typing_activity_in_the_conversation(connector):
    async def model(msg, reply):
        await reply.typing()

    handler = RecordingHandler(model)
    activity = load("channel_mention", service_url=connector.url)
    async with teams_server(handler) as (client, _):
        await client.post("/api/messages", json=activity)
        await handler.drain()
    [typing] = connector.activities
    assert typing.type == "typing" and typing.conversation_id == activity["conversation"]["id"]


async def test_long_reply_is_split_on_paragraphs_under_the_teams_size_limit(connector):
    paragraph = "Ünïcödé text with emoji 🚀 " * 40  # multi-byte in UTF-16
    text = "\n\n".join(f"{i}. {paragraph}" for i in range(120))
    assert utf16_length(text) > 2 * MAX_MESSAGE_LENGTH

    async def model(msg, reply):
        await reply.send(text)

    handler = RecordingHandler(model)
    async with teams_server(handler) as (client, _):
        await client.post("/api/messages", json=load("channel_mention", service_url=connector.url))
        await handler.drain()
    parts = [m.text for m in connector.messages()]
    assert len(parts) >= 3
    assert all(utf16_length(p) <= MAX_MESSAGE_LENGTH for p in parts)
    assert all(p.startswith(tuple("0123456789")) for p in parts)  # cut between paragraphs
    assert "\n\n".join(parts) == text


async def test_code_block_longer_than_a_message_is_split_into_valid_code_blocks(connector):
    code = "```python\n" + "\n".join(f"x_{i} = {i}  # {'#' * 60}" for i in range(1200)) + "\n```"

    async def model(msg, reply):
        await reply.send("Here you go:\n\n" + code)

    handler = RecordingHandler(model)
    async with teams_server(handler) as (client, _):
        await client.post("/api/messages", json=load("channel_mention", service_url=connector.url))
        await handler.drain()
    parts = [m.text for m in connector.messages()]
    assert len(parts) >= 2
    for part in parts:
        assert utf16_length(part) <= MAX_MESSAGE_LENGTH
        assert part.count("```") % 2 == 0  # every part renders its code as code


async def test_throttled_post_is_retried_after_retry_after(connector):
    connector.fail(429, retry_after=0.2)

    async def model(msg, reply):
        await reply.send("after a pause")

    handler = RecordingHandler(model)
    async with teams_server(handler) as (client, _):
        started = time.monotonic()
        await client.post(
            "/api/messages", json=load("group_chat_mention", service_url=connector.url)
        )
        await handler.drain()
        elapsed = time.monotonic() - started
    assert [status for status, _ in connector.rejected] == [429]
    assert [m.text for m in connector.messages()] == ["after a pause"]
    assert elapsed >= 0.2


async def test_connector_errors_are_logged_not_raised(connector, caplog):
    connector.fail(503, count=10)
    metrics = Metrics()

    async def model(msg, reply):
        await reply.send("lost")  # must not raise into the responder

    handler = RecordingHandler(model)
    with caplog.at_level(logging.WARNING, logger="threadwise.teams"):
        async with teams_server(handler, metrics=metrics) as (client, _):
            await client.post(
                "/api/messages", json=load("group_chat_mention", service_url=connector.url)
            )
            await handler.drain()
    assert connector.messages() == []
    assert len(connector.rejected) == 1 + Outbound.max_error_retries
    assert metrics.errors.labels("teams_connector")._value.get() == 1
    assert "reply not delivered" in caplog.text
    assert "lost" not in caplog.text  # message text never logged


async def test_unreachable_connector_is_logged_not_raised(caplog):
    async def model(msg, reply):
        await reply.typing()
        await reply.send("nobody listens")
        stream = reply.stream()
        await stream.append("x")
        await stream.finish("x")

    handler = RecordingHandler(model)
    dead = load("personal_message", service_url="http://127.0.0.1:9/")
    with caplog.at_level(logging.WARNING, logger="threadwise.teams"):
        async with teams_server(handler) as (client, _):
            assert (await client.post("/api/messages", json=dead)).status == 200
            await handler.drain()
    assert "not delivered" in caplog.text


async def test_bot_added_to_a_chat_says_welcome_once(connector):
    cache = MemoryCache()
    handler = RecordingHandler()
    update = load("conversation_update_bot_added", service_url=connector.url)
    async with teams_server(handler, cache=cache) as (client, _):
        for _ in range(3):
            assert (await client.post("/api/messages", json=update)).status == 200
        await connector.wait_for(lambda acts: len(acts) >= 1)
        await asyncio.sleep(0.1)
    [welcome] = connector.messages()
    assert welcome.conversation_id == update["conversation"]["id"]
    assert "!help" in welcome.text and "\n" not in welcome.text
    assert handler.messages == []


async def test_concurrent_redeliveries_welcome_once(connector):
    handler = RecordingHandler()
    update = load("conversation_update_bot_added", service_url=connector.url)
    async with teams_server(handler, cache=MemoryCache()) as (client, _):
        statuses = await asyncio.gather(
            *(client.post("/api/messages", json=update) for _ in range(5))
        )
        assert [r.status for r in statuses] == [200] * 5
        await connector.wait_for(lambda acts: len(acts) >= 1)
        await asyncio.sleep(0.1)
    assert len(connector.messages()) == 1


async def test_two_replicas_sharing_the_store_welcome_once(connector):
    shared = MemoryCache()
    update = load("conversation_update_bot_added", service_url=connector.url)
    async with (
        teams_server(RecordingHandler(), cache=shared) as (one, _),
        teams_server(RecordingHandler(), cache=shared) as (two, _),
    ):
        await asyncio.gather(
            one.post("/api/messages", json=update), two.post("/api/messages", json=update)
        )
        await connector.wait_for(lambda acts: len(acts) >= 1)
        await asyncio.sleep(0.1)
    assert len(connector.messages()) == 1


async def test_bot_added_to_a_team_welcomes_the_channel_and_explains_mentions(connector):
    handler = RecordingHandler()
    update = load("conversation_update_team_install", service_url=connector.url)
    async with teams_server(handler) as (client, _):
        await client.post("/api/messages", json=update)
        await connector.wait_for(lambda acts: len(acts) >= 1)
    [welcome] = connector.messages()
    assert welcome.conversation_id == update["conversation"]["id"]
    assert "mention" in welcome.text


async def test_someone_else_joining_gets_no_welcome(connector):
    handler = RecordingHandler()
    update = load(
        "conversation_update_bot_added",
        service_url=connector.url,
        membersAdded=[{"id": "29:someone-else"}],
    )
    async with teams_server(handler) as (client, _):
        assert (await client.post("/api/messages", json=update)).status == 200
        await asyncio.sleep(0.1)
    assert connector.activities == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"just a string"',
        b'{"type": "message", "text": "no conversation"}',
        b'{"type": "message", "conversation": {"id": "c"}, "text": "no serviceUrl"}',
        b'{"type": 42, "conversation": {"id": "c"}}',
        b"\xff\xfe\x00garbage",
    ],
)
async def test_malformed_body_is_400_never_500(body):
    handler = RecordingHandler()
    async with teams_server(handler) as (client, _):
        resp = await client.post(
            "/api/messages", data=body, headers={"Content-Type": "application/json"}
        )
        assert resp.status == 400
    assert handler.messages == []


async def test_edits_reactions_and_invokes_are_acknowledged_and_ignored(connector):
    handler = RecordingHandler()
    base = load("personal_message", service_url=connector.url)
    async with teams_server(handler) as (client, _):
        for kind in ("messageUpdate", "messageDelete", "messageReaction", "installationUpdate"):
            resp = await client.post("/api/messages", json={**base, "type": kind})
            assert resp.status == 200
        resp = await client.post("/api/messages", json={**base, "type": "invoke", "name": "x"})
        assert resp.status == 200
    assert handler.messages == []
    assert connector.activities == []


async def test_events_are_counted_by_kind(connector):
    metrics = Metrics()
    handler = RecordingHandler()
    async with teams_server(handler, metrics=metrics) as (client, _):
        await client.post("/api/messages", json=load("personal_message", service_url=connector.url))
        await client.post(
            "/api/messages", json=load("group_chat_mention", service_url=connector.url)
        )
        await client.post(
            "/api/messages", json=load("conversation_update_bot_added", service_url=connector.url)
        )
        await client.post(
            "/api/messages",
            json={**load("personal_message", service_url=connector.url), "type": "weird"},
        )
    assert counter(metrics, "message") == 2
    assert counter(metrics, "conversationUpdate") == 1
    assert counter(metrics, "other") == 1


async def test_anonymous_mode_logs_a_loud_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="threadwise.teams"):
        TeamsAdapter(
            app_id=None,
            app_password=None,
            tenant_id=None,
            app_type="MultiTenant",
            allow_anonymous=True,
            handler=RecordingHandler(),
            cache=MemoryCache(),
            metrics=Metrics(),
        )
    assert "ANONYMOUS" in caplog.text and "WITHOUT authentication" in caplog.text


def test_no_app_id_without_anonymous_mode_refuses_to_start():
    with pytest.raises(ValueError, match="MICROSOFT_APP_ID"):
        TeamsAdapter(
            app_id=None,
            app_password=None,
            tenant_id=None,
            app_type="MultiTenant",
            allow_anonymous=False,
            handler=RecordingHandler(),
            cache=MemoryCache(),
            metrics=Metrics(),
        )


async def test_stopping_adapter_refuses_new_events_but_finishes_replies_in_flight(connector):
    gate = asyncio.Event()

    async def model(msg, reply):
        await gate.wait()
        await reply.send("finished during shutdown")

    handler = RecordingHandler(model)
    first = load("group_chat_mention", service_url=connector.url)
    async with teams_server(handler) as (client, adapter):
        assert (await client.post("/api/messages", json=first)).status == 200
        await adapter.stop()
        later = {**first, "id": "1763631099999"}
        assert (await client.post("/api/messages", json=later)).status == 503
        gate.set()
        await handler.drain()
    assert len(handler.messages) == 1
    assert [m.text for m in connector.messages()] == ["finished during shutdown"]


def test_adapter_describes_its_route():
    adapter = TeamsAdapter(
        app_id="app",
        app_password="secret",
        tenant_id=None,
        app_type="MultiTenant",
        allow_anonymous=False,
        handler=RecordingHandler(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    assert adapter.name == "teams"
    assert adapter.routes() == ["POST /api/messages"]
