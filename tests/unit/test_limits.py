"""Limits that keep one user from exhausting the model for everyone (issue 12 §8).

MODEL_MAX_CONCURRENCY caps model calls in flight per process; CONVERSATION_QUEUE_MAX bounds
how many messages of one conversation wait here, the rest being told to retry. Through the
responder as adapters drive it (`submit`), against the shared Redis and the in-process store.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from bot.app import Service, build_service
from bot.messages import IncomingMessage
from bot.replies import BUSY
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.recording import RecordingReply

_ids = itertools.count()


def message(text: str, *, thread: str = "100.1", **kw) -> IncomingMessage:
    args: dict[str, object] = dict(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread=thread,
        user_id="U1",
        user_name="Alice",
        text=text,
        message_id=f"m{next(_ids)}",
        mentions_bot=True,
    )
    args.update(kw)
    return IncomingMessage(**args)  # type: ignore[arg-type]


@pytest.fixture
async def fake():
    async with FakeOpenAI() as f:
        yield f


@pytest.fixture(params=["redis", "memory"])
async def service_factory(request, fake, redis_url, key_prefix):
    made: list[Service] = []

    def make(**kw) -> Service:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
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
        await s.responder.drain(10)
        await s.close()


def sample(svc: Service, name: str, **labels: str) -> float:
    return svc.metrics.registry.get_sample_value(name, labels) or 0.0


# ------------------------------------------------------------------ MODEL_MAX_CONCURRENCY


async def test_model_calls_in_flight_never_exceed_model_max_concurrency(service_factory, fake):
    svc = service_factory(model_max_concurrency=2)
    in_flight = 0
    peak = 0
    gauge_peak = 0.0
    two_running = asyncio.Event()

    async def slow_model(messages):
        nonlocal in_flight, peak, gauge_peak
        in_flight += 1
        peak = max(peak, in_flight)
        gauge_peak = max(gauge_peak, sample(svc, "threadwise_model_calls_in_flight"))
        if in_flight >= 2:
            two_running.set()
        # Hold the call until a second one runs (or a while): a third would show up meanwhile.
        try:
            await asyncio.wait_for(two_running.wait(), 1)
        except TimeoutError:
            pass
        await asyncio.sleep(0.05)
        in_flight -= 1
        two_running.clear()
        return "Answer to " + messages[-1]["content"]

    fake.reply_fn = slow_model
    # Ten conversations, two messages each: slots are taken while holding each conversation's
    # lock, so the second message of a conversation waits for its lock, never for a slot held
    # by itself — nothing may deadlock.
    replies = {}
    for c in range(10):
        for n in range(2):
            replies[(c, n)] = r = RecordingReply()
            svc.responder.submit(message(f"c{c} n{n}", thread=f"{c}.1"), r)
    assert await svc.responder.drain(60) == 0
    assert peak == 2
    assert gauge_peak == 2
    assert sample(svc, "threadwise_model_calls_in_flight") == 0
    assert {k: r.posts for k, r in replies.items()} == {
        (c, n): [f"Answer to c{c} n{n}"] for c in range(10) for n in range(2)
    }


# ----------------------------------------------------------------- CONVERSATION_QUEUE_MAX


async def test_a_burst_beyond_the_queue_gets_busy_and_the_first_are_answered_in_order(
    service_factory, fake
):
    svc = service_factory(conversation_queue_max=2)
    fake.delay = 0.05
    burst = [message(f"n{i}") for i in range(6)]
    replies = [RecordingReply() for _ in burst]
    for m, r in zip(burst, replies, strict=True):
        svc.responder.submit(m, r)
    assert await svc.responder.drain(60) == 0
    # One being answered plus two waiting; every message got exactly one answer.
    assert [r.posts for r in replies] == [
        ["Echo: n0"],
        ["Echo: n1"],
        ["Echo: n2"],
        [BUSY],
        [BUSY],
        [BUSY],
    ]
    stored = await svc.store.history(burst[0].conversation_key)
    assert [s.content for s in stored if s.role == "user"] == ["n0", "n1", "n2"]
    assert sample(svc, "threadwise_busy_refused_total", platform="slack") == 3
    assert len(fake.chat_requests) == 3

    # Nothing was claimed for the refused posts: delivered again, they are answered.
    retry = RecordingReply()
    await svc.responder.handle(burst[3], retry)
    assert retry.posts == ["Echo: n3"]


async def test_the_queue_bound_is_per_conversation(service_factory, fake):
    svc = service_factory(conversation_queue_max=1)
    fake.delay = 0.05
    replies = {}
    for thread in ("a.1", "b.1", "c.1"):
        for n in range(2):
            replies[(thread, n)] = r = RecordingReply()
            svc.responder.submit(message(f"{thread} n{n}", thread=thread), r)
    assert await svc.responder.drain(60) == 0
    assert all(r.posts == [f"Echo: {t} n{n}"] for (t, n), r in replies.items())
    assert sample(svc, "threadwise_busy_refused_total", platform="slack") == 0


async def test_a_post_delivered_twice_while_the_queue_is_full_is_told_busy_once(
    service_factory, fake
):
    svc = service_factory(conversation_queue_max=1)
    fake.delay = 0.05
    first, second, third = (message(f"n{i}") for i in range(3))
    replies = [RecordingReply() for _ in range(4)]
    svc.responder.submit(first, replies[0])
    svc.responder.submit(second, replies[1])
    svc.responder.submit(third, replies[2])  # refused
    svc.responder.submit(third, replies[3])  # Slack's second delivery (app_mention + message)
    assert await svc.responder.drain(60) == 0
    assert [r.posts for r in replies] == [["Echo: n0"], ["Echo: n1"], [BUSY], []]
    assert sample(svc, "threadwise_busy_refused_total", platform="slack") == 1


async def test_a_full_queue_in_a_thread_the_bot_is_not_in_posts_nothing(service_factory, fake):
    svc = service_factory(conversation_queue_max=1)
    replies = [RecordingReply() for _ in range(3)]
    for i, r in enumerate(replies):
        svc.responder.submit(message(f"chatter {i}", thread="900.1", mentions_bot=False), r)
    assert await svc.responder.drain(60) == 0
    assert [r.posts for r in replies] == [[], [], []]
    assert fake.chat_requests == []
    assert sample(svc, "threadwise_busy_refused_total", platform="slack") == 0
