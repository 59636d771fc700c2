"""Teams end to end: Teams activities → a running `threadwise serve` → replies at the connector.

The service runs as a subprocess in anonymous mode (as with local test clients), with Redis,
the fake Azure OpenAI server and the fake Bot Framework connector (the activities' `serviceUrl`).
Each test uses fresh conversation and activity ids, so one service serves the whole module.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import uuid

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from adapters.teams.stream import MAX_MESSAGE_LENGTH
from adapters.text import utf16_length
from tests.support.fakes.fake_connector import FakeConnector, Recorded
from tests.support.fakes.fake_openai import FakeOpenAI, Reply
from tests.support.fixtures.teams.harness import load
from tests.support.helpers import ServeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ADMIN_AAD = "6a1c5f0e-7b2d-4c3e-9f8a-1b2c3d4e5f60"  # Megan, the fixtures' sender
MEMBER_AAD = "0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a0f9"  # Adele, the group chat's sender


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def connector():
    async with FakeConnector() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, connector):
    prefix = f"tw-teams-e2e-{uuid.uuid4().hex[:8]}:"
    env = {
        "TEAMS_ALLOW_ANONYMOUS": "true",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "BOT_ADMINS": f"teams:{ADMIN_AAD}",
        "TOKEN_LIMIT": "128000",
        "MAX_RESPONSE_TOKENS": "60000",
        "LLM_MAX_RETRIES": "0",
    }
    async with ServeProcess(env) as svc:
        yield svc
    r = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, connector):
    model.reset()
    model.configure(tokens_per_second=None, reply=None)
    connector.reset()
    yield
    model.configure(tokens_per_second=None, reply=None)


_ids = itertools.count(1)


def activity(name: str, connector: FakeConnector, *, text: str | None = None, **changes):
    """A fixture activity with a new activity id and (unless given) a new conversation id."""
    act = load(name, service_url=connector.url, **changes)
    act["id"] = f"{1_800_000_000_000 + next(_ids)}"
    if "conversation" not in changes:
        conv = act["conversation"]
        if conv.get("conversationType") == "channel":
            base = conv["id"].split(";")[0]
            conv["id"] = f"{base};messageid={act['id']}"
        else:
            conv["id"] = f"{conv['id'][:40]}-{uuid.uuid4().hex[:8]}"
    if text is not None:
        act["text"] = text
    return act


def reply_in(act: dict, text: str) -> dict:
    """A later message in the same conversation (same reply chain for channels)."""
    later = dict(act, id=f"{1_800_000_000_000 + next(_ids)}", text=text)
    return later


async def post(service: ServeProcess, act: dict) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(service.url + "/api/messages", json=act) as resp:
            return resp.status


def finished_messages(connector: FakeConnector, conversation_id: str) -> list[Recorded]:
    """Visible messages in a conversation: plain ones and final stream messages."""
    return [
        a
        for a in connector.activities
        if a.conversation_id == conversation_id
        and a.type == "message"
        and (a.stream is None or a.stream.get("streamType") == "final")
    ]


async def answer(connector, conversation_id: str, count: int = 1, timeout: float = 20.0):
    await connector.wait_for(
        lambda _: len(finished_messages(connector, conversation_id)) >= count, timeout
    )
    await asyncio.sleep(0.2)  # anything else would arrive now
    return finished_messages(connector, conversation_id)


async def test_personal_chat_reply_streams_with_the_teams_protocol(
    service, model, connector, fresh
):
    story = " ".join(f"word{i}" for i in range(40)) + "."
    model.script(Reply(story))
    model.configure(tokens_per_second=14)  # ~3 s of generation: several 1 s stream updates
    act = activity("personal_message", connector)
    assert await post(service, act) == 200
    [final] = await answer(connector, act["conversation"]["id"])
    posts = [a for a in connector.activities if a.stream is not None]
    first, *chunks, last = posts
    assert last is final
    # The model's first words open the stream: no informative update holds them back.
    assert first.type == "typing"
    assert first.stream == {"type": "streaminfo", "streamType": "streaming", "streamSequence": 1}
    assert first.text and story.startswith(first.text)
    assert len(chunks) >= 2
    assert [c.stream["streamSequence"] for c in chunks] == list(range(2, 2 + len(chunks)))
    for chunk in chunks:
        assert chunk.type == "typing" and chunk.stream["streamType"] == "streaming"
        assert chunk.stream["streamId"] == first.id
        assert story.startswith(chunk.text)  # the full text so far
    gaps = [b.at - a.at for a, b in itertools.pairwise(posts)]
    assert min(gaps) >= 0.9, gaps  # at most about one update a second
    assert final.stream["streamId"] == first.id and "streamSequence" not in final.stream
    assert final.text == story
    assert all(p.reply_to_id == act["id"] for p in posts)
    assert connector.rejected == []


async def test_group_chat_mention_is_removed_and_answered_in_one_message(
    service, model, connector, fresh
):
    model.script(Reply("1. Wins\n2. Pains\n3. Actions"))
    act = activity("group_chat_mention", connector)
    assert await post(service, act) == 200
    [reply] = await answer(connector, act["conversation"]["id"])
    assert reply.stream is None  # no streaming outside 1:1 chats
    assert reply.text == "1. Wins\n2. Pains\n3. Actions"
    user = model.last_messages()[-1]
    assert user["role"] == "user"
    assert user["content"] == "can you draft an agenda for Friday's retro?"
    assert "<at>" not in user["content"]


async def test_channel_reply_stays_in_its_reply_chain_with_its_own_memory(
    service, model, connector, fresh
):
    first = activity("channel_mention", connector)
    chain = first["conversation"]["id"]
    assert ";messageid=" in chain
    model.script(Reply("Checklist: backup, deploy, verify."), Reply("Step two is deploy."))
    assert await post(service, first) == 200
    [reply] = await answer(connector, chain)
    assert reply.conversation_id == chain and reply.reply_to_id == first["id"]
    sent = model.last_messages()[-1]["content"]
    assert sent == "summarise the rollout checklist for @Adele Vance"

    follow_up = reply_in(first, "<at>Threadwise</at> what is step two?")
    assert await post(service, follow_up) == 200
    replies = await answer(connector, chain, count=2)
    assert replies[-1].text == "Step two is deploy." and replies[-1].reply_to_id == follow_up["id"]
    contents = [m["content"] for m in model.last_messages()]
    assert "Checklist: backup, deploy, verify." in contents  # the chain's history
    assert contents[-1] == "what is step two?"

    # Another reply chain in the same channel starts with no memory.
    other = activity("channel_mention", connector, text="<at>Threadwise</at> hello")
    assert other["conversation"]["id"] != chain
    model.script(Reply("Hi."))
    assert await post(service, other) == 200
    await answer(connector, other["conversation"]["id"])
    assert [m["role"] for m in model.last_messages()] == ["system", "user"]


async def test_long_reply_is_split_under_the_teams_size_limit(service, model, connector, fresh):
    paragraph = "Long answer paragraph with some ünïcödé and emoji 🚀. " * 10
    long_reply = "\n\n".join(f"Section {i}. {paragraph.strip()}" for i in range(160))
    assert utf16_length(long_reply) > MAX_MESSAGE_LENGTH
    model.script(Reply(long_reply))
    act = activity("channel_mention", connector)
    assert await post(service, act) == 200
    await connector.wait_for(
        lambda _: (
            sum(len(m.text) for m in finished_messages(connector, act["conversation"]["id"]))
            >= len(long_reply) - 10
        ),
        timeout=120,
    )
    parts = [m.text for m in finished_messages(connector, act["conversation"]["id"])]
    assert len(parts) >= 2
    assert all(utf16_length(p) <= MAX_MESSAGE_LENGTH for p in parts)
    assert "\n\n".join(parts) == long_reply


async def test_long_streamed_reply_finalizes_the_stream_and_continues(
    service, model, connector, fresh
):
    paragraph = "Streamed paragraph with plenty of words to fill the message. " * 12
    long_reply = "\n\n".join(f"Part {i}. {paragraph.strip()}" for i in range(120))
    model.script(Reply(long_reply))
    act = activity("personal_message", connector)
    assert await post(service, act) == 200
    conv = act["conversation"]["id"]
    await connector.wait_for(
        lambda _: (
            len(finished_messages(connector, conv)) >= 2
            and sum(len(m.text) for m in finished_messages(connector, conv)) >= len(long_reply) - 10
        ),
        timeout=120,
    )
    messages = finished_messages(connector, conv)
    assert messages[0].stream and messages[0].stream["streamType"] == "final"
    assert all(utf16_length(m.text) <= MAX_MESSAGE_LENGTH for m in messages)
    assert "".join("".join(m.text.split()) for m in messages) == "".join(long_reply.split())
    assert connector.rejected == []


async def test_commands_are_answered_in_place_and_never_reach_the_model(
    service, model, connector, fresh
):
    dm = activity("personal_message", connector, text="!help")
    assert await post(service, dm) == 200
    [help_text] = await answer(connector, dm["conversation"]["id"])
    assert "!reset" in help_text.text and "!prompt" in help_text.text

    # Anonymous mode: nothing vouches for the sender, so even BOT_ADMINS' object id is no admin.
    set_prompt = reply_in(dm, "!prompt set --workspace Answer like a pirate.")
    assert await post(service, set_prompt) == 200
    replies = await answer(connector, dm["conversation"]["id"], count=2)
    assert "only admins" in replies[-1].text

    show = reply_in(dm, "!prompt")
    assert await post(service, show) == 200
    replies = await answer(connector, dm["conversation"]["id"], count=3)
    assert "System prompt in effect here" in replies[-1].text
    assert "pirate" not in replies[-1].text

    group = activity("group_chat_mention", connector, text="<at>Threadwise</at> !prompt set x")
    assert await post(service, group) == 200
    [refused] = await answer(connector, group["conversation"]["id"])
    assert "admin" in refused.text.lower()
    assert model.chat_requests == []


async def test_mention_without_a_question_gets_a_hint_not_the_model(
    service, model, connector, fresh
):
    act = activity("group_chat_mention", connector, text="<at>Threadwise</at>")
    assert await post(service, act) == 200
    [hint] = await answer(connector, act["conversation"]["id"])
    assert "!help" in hint.text
    assert model.chat_requests == []


async def test_bot_added_to_a_chat_is_welcomed_once(service, model, connector, fresh):
    update = activity("conversation_update_bot_added", connector)
    for _ in range(3):
        assert await post(service, update) == 200
    [welcome] = await answer(connector, update["conversation"]["id"])
    await asyncio.sleep(0.3)
    assert finished_messages(connector, update["conversation"]["id"]) == [welcome]
    assert "!help" in welcome.text


async def test_model_failure_ends_the_stream_with_an_apology(service, model, connector, fresh):
    from tests.support.fakes.fake_openai import server_error

    model.script(server_error(), server_error(), server_error(), server_error())
    act = activity("personal_message", connector)
    assert await post(service, act) == 200
    [apology] = await answer(connector, act["conversation"]["id"])
    assert "sorry" in apology.text.lower() or "try again" in apology.text.lower()
    streams = [a for a in connector.activities if a.stream is not None]
    # Whatever was opened is closed: no stream is left hanging.
    if streams:
        assert streams[-1].stream["streamType"] == "final"


async def test_malformed_body_is_400_and_service_keeps_answering(service, model, connector, fresh):
    async with aiohttp.ClientSession() as http:
        async with http.post(service.url + "/api/messages", data=b"{nope") as resp:
            assert resp.status == 400
    act = activity("personal_message", connector, text="still there?")
    assert await post(service, act) == 200
    await answer(connector, act["conversation"]["id"])


async def test_service_with_an_app_id_requires_a_bot_framework_token(redis_url, model):
    env = {
        "MICROSOFT_APP_ID": "9b2e7c1a-4d3f-4e8a-b6c5-1f0e2d3c4b5a",
        "MICROSOFT_APP_PASSWORD": "not-a-real-secret",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    }
    body = load("personal_message", service_url="http://127.0.0.1:9/")
    async with ServeProcess(env) as svc, aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer garbage"}, {"Authorization": "Basic x"}):
            async with http.post(svc.url + "/api/messages", json=body, headers=headers) as resp:
                assert resp.status == 401
        async with http.post(svc.url + "/api/messages", data=b"{nope") as resp:
            assert resp.status == 401  # unauthenticated: no hint about the body
    assert "Traceback" not in svc.output()


async def test_sigterm_finishes_the_reply_in_flight_then_exits(redis_url, model, connector, fresh):
    model.script(Reply("one two three four five six seven eight nine ten"))
    model.configure(tokens_per_second=8)
    env = {
        "TEAMS_ALLOW_ANONYMOUS": "true",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    }
    svc = await ServeProcess(env).start()
    try:
        act = activity("personal_message", connector)
        assert await post(svc, act) == 200
        await connector.wait_for(lambda acts: any(a.stream for a in acts))  # reply under way
        svc.proc.send_signal(signal.SIGTERM)
        [final] = await answer(connector, act["conversation"]["id"])
        assert final.text == "one two three four five six seven eight nine ten"
        assert await asyncio.wait_for(svc.proc.wait(), 20) == 0
    finally:
        await svc.stop()
