"""The turn, end to end in process: real store (Redis and in-process), fake model."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from bot.app import build_service
from bot.messages import IncomingMessage
from bot.replies import (
    APOLOGY_SERVER_ERROR,
    APOLOGY_STORE,
    CUT_OFF,
    FILTERED_PROMPT,
    INTERRUPTED,
)
from bot.settings import Settings
from tests.support.fakes.fake_openai import (
    FakeOpenAI,
    Reply,
    StreamDies,
    context_length_exceeded,
    prompt_content_filter,
    server_error,
)
from tests.support.recording import RecordingReply

_ids = itertools.count()


def message(text: str, **kw) -> IncomingMessage:
    args = dict(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread="100.1",
        user_id="U1",
        user_name="Alice Smith",
        text=text,
        message_id=f"m{next(_ids)}",
        is_dm=False,
        mentions_bot=True,
    )
    args.update(kw)
    return IncomingMessage(**args)


@pytest.fixture
async def fake():
    async with FakeOpenAI() as f:
        yield f


@pytest.fixture(params=["redis", "memory"])
async def service_factory(request, fake, redis_url, key_prefix):
    made = []

    def make(**kw):
        settings = Settings(
            redis_url=redis_url if request.param == "redis" else None,
            redis_key_prefix=key_prefix,
            openai_base_url=fake.base_url,
            azure_openai_api_key="k",
            azure_openai_deployment="gpt-4o",
            llm_max_retries=0,
            **kw,
        )
        svc = build_service(settings)
        made.append(svc)
        return svc

    yield make
    for s in made:
        await s.close()


async def test_answer_is_streamed_and_the_turn_stored_with_speaker_name(service_factory, fake):
    svc = service_factory()
    reply = RecordingReply()
    m = message("What is Redis?")
    await svc.responder.handle(m, reply)
    assert reply.posts == ["Echo: What is Redis?"]
    assert "".join(reply.streams[0].deltas) == "Echo: What is Redis?"
    assert reply.typing_calls == 1
    sent = fake.last_messages()
    assert sent[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert sent[-1] == {"role": "user", "content": "What is Redis?", "name": "Alice_Smith"}
    stored = await svc.store.history(m.conversation_key)
    assert [(s.role, s.content) for s in stored] == [
        ("user", "What is Redis?"),
        ("assistant", "Echo: What is Redis?"),
    ]


async def test_second_message_sees_the_first_turn_as_history(service_factory, fake):
    svc = service_factory()
    await svc.responder.handle(message("one"), RecordingReply())
    await svc.responder.handle(message("two"), RecordingReply())
    contents = [m["content"] for m in fake.last_messages()]
    assert contents == ["You are a helpful assistant.", "one", "Echo: one", "two"]


async def test_dm_messages_carry_no_name(service_factory, fake):
    svc = service_factory()
    await svc.responder.handle(message("hi", is_dm=True, thread=None), RecordingReply())
    assert "name" not in fake.last_messages()[-1]


async def test_commands_never_reach_the_model(service_factory, fake):
    svc = service_factory()
    reply = RecordingReply()
    await svc.responder.handle(message("!help"), reply)
    await svc.responder.handle(message("  !reset"), reply)
    assert fake.chat_requests == []
    assert "!reset" in reply.posts[0]
    assert "forgotten" in reply.posts[1]


async def test_reset_forgets_the_conversation(service_factory, fake):
    svc = service_factory()
    await svc.responder.handle(message("remember me"), RecordingReply())
    await svc.responder.handle(message("!reset"), RecordingReply())
    await svc.responder.handle(message("fresh"), RecordingReply())
    assert [m["content"] for m in fake.last_messages()][1:] == ["fresh"]


async def test_a_message_too_long_alone_is_refused_with_its_size(service_factory, fake):
    svc = service_factory(token_limit=300, max_response_tokens=100, prompt_max_tokens=50)
    reply = RecordingReply()
    await svc.responder.handle(message("word " * 400), reply)
    assert fake.chat_requests == []
    assert "tokens" in reply.posts[0] and "TOKEN_LIMIT 300" in reply.posts[0]
    assert await svc.store.history(message("x").conversation_key) == []


async def test_history_is_trimmed_to_the_limit(service_factory, fake):
    svc = service_factory(token_limit=400, max_response_tokens=100, prompt_max_tokens=50)
    for i in range(30):
        await svc.responder.handle(message(f"message number {i} " * 3), RecordingReply())
    sent = fake.last_messages()
    assert sent[1]["role"] == "user"
    from tests.support.fakes.fake_openai import count_prompt_tokens

    assert count_prompt_tokens(sent) + 100 <= 400
    assert len(sent) < 61


async def test_model_outage_gets_an_apology_and_stores_nothing(service_factory, fake):
    svc = service_factory()
    fake.script(server_error())
    reply = RecordingReply()
    m = message("hello?")
    await svc.responder.handle(m, reply)
    assert reply.posts == [APOLOGY_SERVER_ERROR]
    assert await svc.store.history(m.conversation_key) == []
    await svc.responder.handle(message("again"), reply)
    assert reply.posts[-1] == "Echo: again"


async def test_prompt_content_filter_explains_and_stores_nothing(service_factory, fake):
    svc = service_factory()
    fake.script(prompt_content_filter())
    reply = RecordingReply()
    m = message("something bad")
    await svc.responder.handle(m, reply)
    assert reply.posts == [FILTERED_PROMPT]
    assert await svc.store.history(m.conversation_key) == []


async def test_completion_content_filter_is_noted_and_not_stored(service_factory, fake):
    svc = service_factory()
    fake.script(Reply("Half an ans", finish_reason="content_filter"))
    reply = RecordingReply()
    m = message("q")
    await svc.responder.handle(m, reply)
    assert "content filter" in reply.posts[0]
    assert await svc.store.history(m.conversation_key) == []


async def test_length_cut_off_is_noted_and_the_reply_stored(service_factory, fake):
    svc = service_factory()
    fake.script(Reply("A long story", finish_reason="length"))
    reply = RecordingReply()
    m = message("tell me")
    await svc.responder.handle(m, reply)
    assert reply.posts[0] == "A long story\n\n" + CUT_OFF
    assert [s.content for s in await svc.store.history(m.conversation_key)] == [
        "tell me",
        "A long story",
    ]


async def test_context_length_error_trims_harder_once_and_retries(service_factory, fake):
    svc = service_factory()
    for i in range(4):
        await svc.responder.handle(message(f"turn {i}"), RecordingReply())
    fake.script(context_length_exceeded())
    reply = RecordingReply()
    await svc.responder.handle(message("last"), reply)
    assert reply.posts == ["Echo: last"]
    first, second = fake.chat_requests[-2:]
    assert len(second.body["messages"]) < len(first.body["messages"])


async def test_stream_dying_half_way_ends_with_one_message_and_nothing_stored(
    service_factory, fake
):
    svc = service_factory()
    fake.reply = "alpha beta gamma delta epsilon"
    fake.script(StreamDies(after_chunks=2))
    reply = RecordingReply()
    m = message("q")
    await svc.responder.handle(m, reply)
    assert len(reply.posts) == 1 and reply.posts[0].endswith(INTERRUPTED)
    assert await svc.store.history(m.conversation_key) == []


async def test_duplicate_delivery_of_one_post_is_answered_once(service_factory, fake):
    svc = service_factory()
    m = message("once please")
    r1, r2 = RecordingReply(), RecordingReply()
    await asyncio.gather(svc.responder.handle(m, r1), svc.responder.handle(m, r2))
    assert len(r1.posts) + len(r2.posts) == 1
    assert len(fake.chat_requests) == 1


async def test_thread_reply_without_mention_is_answered_only_in_an_active_thread(
    service_factory, fake
):
    svc = service_factory()
    reply = RecordingReply()
    await svc.responder.handle(message("stray", thread="200.1", mentions_bot=False), reply)
    assert reply.posts == []
    await svc.responder.handle(message("hi bot", thread="300.1"), reply)
    await svc.responder.handle(message("follow-up", thread="300.1", mentions_bot=False), reply)
    assert reply.posts == ["Echo: hi bot", "Echo: follow-up"]


async def test_a_reply_in_a_thread_the_bot_is_not_in_is_explained_at_debug_only(
    service_factory, fake, caplog
):
    svc = service_factory()
    with caplog.at_level(logging.DEBUG, logger="threadwise.responder"):
        await svc.responder.handle(
            message("stray", thread="200.1", mentions_bot=False), reply := RecordingReply()
        )
    assert reply.posts == []
    [rec] = [r for r in caplog.records if "not subscribed" in r.getMessage()]
    assert rec.levelno == logging.DEBUG


async def test_messages_in_one_conversation_are_answered_in_order(service_factory, fake):
    svc = service_factory()
    fake.delay = 0.02
    replies = [RecordingReply() for _ in range(10)]
    for i, r in enumerate(replies):
        svc.responder.submit(message(f"n{i}"), r)
    await svc.responder.drain(30)
    stored = await svc.store.history(message("x").conversation_key)
    assert [s.content for s in stored if s.role == "user"] == [f"n{i}" for i in range(10)]


async def test_store_outage_gets_an_apology(fake, redis_server, key_prefix):
    settings = Settings(
        redis_url=redis_server.url,
        redis_key_prefix=key_prefix,
        openai_base_url=fake.base_url,
        azure_openai_api_key="k",
        azure_openai_deployment="gpt-4o",
    )
    svc = build_service(settings)
    redis_server.stop()
    reply = RecordingReply()
    await svc.responder.handle(message("anyone?"), reply)
    assert reply.posts == [APOLOGY_STORE]
    assert fake.chat_requests == []
    await svc.close()


async def test_empty_mention_gets_a_hint_not_a_model_call(service_factory, fake):
    svc = service_factory()
    reply = RecordingReply()
    await svc.responder.handle(message("   "), reply)
    assert "!help" in reply.posts[0]
    assert fake.chat_requests == []
