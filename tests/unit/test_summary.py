"""The running summary (HISTORY_SUMMARY) through the responder, the real openai SDK, the fake
model and both stores: what trimming drops reaches the model again as a summary."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from bot.app import build_service
from bot.messages import IncomingMessage
from bot.settings import Settings
from bot.summary import FOLD_INSTRUCTIONS, SUMMARY_LABEL
from tests.support.fakes.fake_openai import FakeOpenAI, count_prompt_tokens
from tests.support.recording import RecordingReply

FACTS = (
    "FACT: the launch code is 7391",
    "FACT: Priya owns the migration",
    "FACT: the budget is 42000 EUR",
)
_FOLD_START = FOLD_INSTRUCTIONS[:40]
_ids = itertools.count()


def is_fold(messages) -> bool:
    return str(messages[0].get("content", "")).startswith(_FOLD_START)


def summarising(messages) -> str:
    """A fake summariser: keeps every FACT line of the earlier summary and the transcript."""
    if not is_fold(messages):
        return "Echo: " + str(messages[-1]["content"])
    facts = [line.strip("-• ") for line in messages[1]["content"].splitlines()]
    kept = dict.fromkeys(f[f.index("FACT") :] for f in facts if "FACT" in f)
    return "\n".join(f"- {f}" for f in kept) or "- nothing notable yet"


def message(text: str, conv_thread: str = "100.1", user: str = "U1") -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread=conv_thread,
        user_id=user,
        user_name="Alice",
        text=text,
        message_id=f"s{next(_ids)}",
        is_dm=False,
        mentions_bot=True,
    )


def turn_text(i: int) -> str:
    planted = f" {FACTS[i]}." if i < len(FACTS) else ""
    return f"Turn {i}: let us keep discussing the rollout plan in some detail.{planted}"


@pytest.fixture
async def fake():
    async with FakeOpenAI(reply_fn=summarising) as f:
        yield f


@pytest.fixture(params=["redis", "memory"])
async def make(request, fake, redis_url, key_prefix):
    made = []

    def factory(**kw):
        kw.setdefault("history_summary", True)
        settings = Settings(
            redis_url=redis_url if request.param == "redis" else None,
            redis_key_prefix=key_prefix,
            openai_base_url=fake.base_url,
            azure_openai_api_key="k",
            azure_openai_deployment="gpt-4o",
            llm_max_retries=0,
            token_limit=700,
            max_response_tokens=100,
            summary_max_tokens=150,
            **kw,
        )
        svc = build_service(settings)
        made.append(svc)
        return svc

    yield factory
    for s in made:
        await s.close()


async def talk(svc, turns: range, thread: str = "100.1") -> list[RecordingReply]:
    replies = []
    for i in turns:
        reply = RecordingReply()
        await svc.responder.handle(message(turn_text(i), thread), reply)
        replies.append(reply)
        if svc.summarizer is not None:
            assert await svc.summarizer.wait_idle(30)
    return replies


def answers(fake):
    return [r.messages for r in fake.chat_requests if not is_fold(r.messages)]


def folds(fake):
    return [r.messages for r in fake.chat_requests if is_fold(r.messages)]


async def test_a_long_thread_keeps_its_first_facts_in_a_summary_sent_after_the_prompt(make, fake):
    svc = make()
    replies = await talk(svc, range(60))
    assert all(r.posts and r.posts[0].startswith("Echo: Turn") for r in replies)
    last = answers(fake)[-1]
    assert last[0]["content"] == "You are a helpful assistant."
    assert last[1]["role"] == "system" and last[1]["content"].startswith(SUMMARY_LABEL)
    for fact in FACTS:
        assert fact in last[1]["content"]
    # The facts reach the model only through the summary: their turns left the history.
    assert not any("FACT" in str(m["content"]) for m in last[2:])
    # The summary came from the dropped messages: the first fold read the planted turns.
    assert FACTS[0] in folds(fake)[0][1]["content"]
    # Every request fits the limit, summary included.
    assert all(count_prompt_tokens(m) <= 700 - 100 for m in answers(fake))


async def test_with_summaries_off_no_summarisation_request_is_ever_made(make, fake):
    svc = make(history_summary=False)
    await talk(svc, range(40))
    assert folds(fake) == []
    assert len(answers(fake)) == 40
    assert not any(m["content"].startswith(SUMMARY_LABEL) for m in answers(fake)[-1])


async def test_summary_tokens_count_in_usage_but_not_as_replies(make, fake):
    svc = make()
    await talk(svc, range(30))
    assert folds(fake)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    totals = (await svc.store.usage([today], "c|slack:T1:C1"))[today]
    reported = [count_prompt_tokens(r.messages) for r in fake.chat_requests]
    assert totals.replies == 30
    assert totals.prompt_tokens == sum(reported)


async def test_a_hanging_summarisation_never_delays_or_blocks_answers(make, fake):
    release = asyncio.Event()

    async def slow_folds(messages):
        if is_fold(messages):
            await release.wait()
        return summarising(messages)

    fake.reply_fn = slow_folds
    svc = make()
    for i in range(25):
        reply = RecordingReply()
        await asyncio.wait_for(svc.responder.handle(message(turn_text(i)), reply), 30)
        assert reply.posts, f"turn {i} was not answered"
    assert svc.summarizer.in_flight == 1  # one fold, waiting on the model
    release.set()
    assert await svc.summarizer.wait_idle(30)
    await talk(svc, range(25, 27))
    assert FACTS[0] in answers(fake)[-1][1]["content"]


async def test_a_failed_summarisation_is_retried_by_a_later_turn(make, fake):
    failures = {"left": 1}

    def first_fold_empty(messages):
        if is_fold(messages) and failures["left"]:
            failures["left"] -= 1
            return ""
        return summarising(messages)

    fake.reply_fn = first_fold_empty
    svc = make()
    await talk(svc, range(30))
    assert svc.metrics.summaries.labels("failed")._value.get() == 1
    assert svc.metrics.summaries.labels("folded")._value.get() >= 1
    assert FACTS[0] in answers(fake)[-1][1]["content"]


async def test_summary_command_shows_it_and_reset_forgets_it(make, fake):
    svc = make()
    reply = RecordingReply()
    await svc.responder.handle(message("!summary"), reply)
    assert "no summary of this conversation yet" in reply.posts[0]
    await talk(svc, range(30))
    reply = RecordingReply()
    await svc.responder.handle(message("!summary", user="U2"), reply)  # anyone may read it
    assert FACTS[1] in reply.posts[0] and "folded in" in reply.posts[0]
    reply = RecordingReply()
    await svc.responder.handle(message("!reset"), reply)
    assert "summary" in reply.posts[0]
    reply = RecordingReply()
    await svc.responder.handle(message("!summary"), reply)
    assert "no summary of this conversation yet" in reply.posts[0]
    await talk(svc, range(30, 31))
    assert not any(m["content"].startswith(SUMMARY_LABEL) for m in answers(fake)[-1])


async def test_summary_command_says_when_summaries_are_off(make):
    svc = make(history_summary=False)
    reply = RecordingReply()
    await svc.responder.handle(message("!summary"), reply)
    assert "HISTORY_SUMMARY is off" in reply.posts[0]


async def test_two_replicas_fold_a_thread_once(redis_url, key_prefix, fake):
    release = asyncio.Event()

    async def slow_folds(messages):
        if is_fold(messages):
            await release.wait()
        return summarising(messages)

    def replica(summaries=True):
        return build_service(
            Settings(
                redis_url=redis_url,
                redis_key_prefix=key_prefix,
                openai_base_url=fake.base_url,
                azure_openai_api_key="k",
                azure_openai_deployment="gpt-4o",
                llm_max_retries=0,
                token_limit=700,
                max_response_tokens=100,
                history_summary=summaries,
            )
        )

    a, b = replica(), replica()
    try:
        # Fill the thread through replica a with folding held back, then let both try.
        fake.reply_fn = slow_folds
        for i in range(20):
            await a.responder.handle(message(turn_text(i)), RecordingReply())
        conv = message("x").conversation_key
        b.summarizer.schedule(conv, _attribution())
        a.summarizer.schedule(conv, _attribution())
        await _until(lambda: len(folds(fake)) >= 1)
        await asyncio.sleep(0.3)  # room for a second, wrong, fold request to arrive
        release.set()
        assert await a.summarizer.wait_idle(30) and await b.summarizer.wait_idle(30)
        transcripts = [f[1]["content"].split("Messages to fold in")[1] for f in folds(fake)]
        firsts = [t for t in transcripts if "[user Alice]: Turn 0:" in t]
        assert len(firsts) == 1, "the dropped turns were folded by both replicas"
        assert FACTS[0] in (await a.store.summary(conv)).text
    finally:
        await a.close()
        await b.close()


def _attribution():
    from bot.store import Usage

    return Usage("slack:T1", "slack:T1:C1", "slack:T1:U1", 0, 0)


async def _until(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
