"""The model-call pacer (bot/pacing.py), the failure kinds (bot/model_errors.py) and the token
ratio (bot/token_ratio.py), on their own."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.model_errors import ModelError, retry_after
from bot.pacing import ModelPacer, status_kept
from bot.token_ratio import MAX_RATIO, TokenRatio
from bot.trimming import prompt_budget


def rate_limited(after: float | None = 0.2) -> ModelError:
    return ModelError("rate_limited", "HTTP 429", retry_after=after)


async def test_a_429_halves_the_limit_from_the_calls_in_flight_once_per_episode():
    pacer = ModelPacer(256, rng=lambda: 0.0)
    gate = asyncio.Event()
    all_in = asyncio.Event()
    calls = 0

    async def attempt():
        nonlocal calls
        calls += 1
        if calls == 8:
            all_in.set()
        await gate.wait()
        if calls <= 8:
            raise rate_limited(0.05)
        return "ok"

    tasks = [
        asyncio.create_task(pacer.run(attempt, deadline=time.monotonic() + 30)) for _ in range(8)
    ]
    await asyncio.wait_for(all_in.wait(), 10)
    assert pacer.in_flight == 8
    gate.set()
    assert await asyncio.gather(*tasks) == ["ok"] * 8
    # Eight on the wire answered 429 together: one decrease, from 8 to 4, then growth.
    assert 4 <= pacer.limit < 8
    assert pacer.in_flight == 0


async def test_success_grows_the_limit_back_additively():
    pacer = ModelPacer(4)
    pacer.limit = 1.0

    async def ok():
        return 1

    for _ in range(2):
        await pacer.run(ok, deadline=time.monotonic() + 5)
    assert pacer.limit == pytest.approx(2.5)  # 1 -> 2 -> 2.5: about one more call per round
    for _ in range(20):
        await pacer.run(ok, deadline=time.monotonic() + 5)
    assert pacer.limit == 4


async def test_turns_are_admitted_in_arrival_order_and_a_429_keeps_its_place():
    pacer = ModelPacer(1, rng=lambda: 0.0)
    order: list[str] = []
    first_try = True

    def attempt_for(name: str):
        async def attempt():
            nonlocal first_try
            order.append(name)
            if name == "a" and first_try:
                first_try = False
                raise rate_limited(0.1)
            await asyncio.sleep(0.01)
            return name

        return attempt

    deadline = time.monotonic() + 10
    tasks = []
    for name in "abcd":
        tasks.append(asyncio.create_task(pacer.run(attempt_for(name), deadline=deadline)))
        await asyncio.sleep(0)
    assert await asyncio.gather(*tasks) == list("abcd")
    assert order == ["a", "a", "b", "c", "d"]


async def test_a_wait_past_the_deadline_gives_up_at_once_as_rate_limited():
    pacer = ModelPacer(4, rng=lambda: 0.0)

    async def attempt():
        raise rate_limited(30)

    started = time.monotonic()
    with pytest.raises(ModelError) as err:
        await pacer.run(attempt, deadline=time.monotonic() + 2)
    assert err.value.kind == "rate_limited"
    assert time.monotonic() - started < 1.5  # it did not sit out a wait that could not end well


async def test_pauses_after_a_429_are_jittered():
    pacer = ModelPacer(4, rng=lambda: 1.0)
    before = time.monotonic()
    pacer._rate_limited(time.monotonic(), 5.0)
    assert pacer.paused_until - before == pytest.approx(5.5, abs=0.05)  # +10%, capped at 1 s


async def test_server_errors_are_retried_up_to_max_retries_timeouts_never():
    pacer = ModelPacer(4, max_retries=2, rng=lambda: 0.0)
    tries = {"server_error": 0, "timeout": 0}

    def failing(kind: str):
        async def attempt():
            tries[kind] += 1
            raise ModelError(kind)

        return attempt

    for kind in tries:
        with pytest.raises(ModelError):
            await pacer.run(failing(kind), deadline=time.monotonic() + 10)
    assert tries == {"server_error": 3, "timeout": 1}


async def test_a_turn_waiting_past_its_deadline_behind_busy_slots_is_a_timeout():
    pacer = ModelPacer(1)
    release = asyncio.Event()

    async def hold():
        await release.wait()

    holder = asyncio.create_task(pacer.run(hold, deadline=time.monotonic() + 10))
    await asyncio.sleep(0.01)
    with pytest.raises(ModelError) as err:
        await pacer.run(hold, deadline=time.monotonic() + 0.1)
    assert err.value.kind == "timeout"  # not throttled: the model is slow, not rate limiting
    release.set()
    await holder
    assert pacer.in_flight == 0 and pacer.waiting == 0


async def test_status_is_shown_again_while_waiting_until_stopped():
    shown = 0
    enough = asyncio.Event()

    async def show():
        nonlocal shown
        shown += 1
        if shown >= 3:
            enough.set()

    async with status_kept(show, every=0.01) as stop:
        await asyncio.wait_for(enough.wait(), 10)
        stop()
        seen = shown
        await asyncio.sleep(0.05)
    assert shown <= seen + 1


def test_retry_after_prefers_milliseconds_and_ignores_dates():
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after(None) is None


def test_token_ratio_is_learnt_bounded_and_per_deployment():
    ratio = TokenRatio()
    ratio.observe("llama", 108, 100)
    ratio.observe("llama", 95, 100)  # fewer than ours: our count stays the conservative one
    ratio.observe("tiny", 50, 10)  # too small a prompt to say anything
    assert ratio.ratio("llama") == pytest.approx(1.08)
    assert ratio.ratio("tiny") == 1.0
    ratio.observe("digits", 10_000, 100)
    assert ratio.ratio("digits") == MAX_RATIO
    assert ratio.ratio("other") == 1.0


def test_token_ratio_shrinks_the_prompt_budget_and_the_margin_applies_without_usage():
    ratio = TokenRatio(margin_percent=10)
    limit = ratio.budget_limit("d", 16384, 1024)
    assert prompt_budget(limit, 1024) == int(prompt_budget(16384, 1024) / 1.1)
    ratio.observe("d", 2000, 1000)
    assert (
        prompt_budget(ratio.budget_limit("d", 16384, 1024), 1024) == prompt_budget(16384, 1024) // 2
    )
    assert TokenRatio().budget_limit("d", 16384, 1024) == 16384


async def test_each_retry_is_logged_at_debug_with_its_kind_and_wait(caplog):
    pacer = ModelPacer(4, max_retries=1, rng=lambda: 0.0)
    answers = iter([rate_limited(0.05), ModelError("server_error", "HTTP 503"), "ok"])

    async def attempt():
        answer = next(answers)
        if isinstance(answer, ModelError):
            raise answer
        return answer

    with caplog.at_level("DEBUG", logger="threadwise.llm"):
        assert await pacer.run(attempt, deadline=time.monotonic() + 10) == "ok"
    retried = [r for r in caplog.records if r.getMessage() == "model call retried"]
    assert [(r.levelname, r.kind) for r in retried] == [
        ("DEBUG", "rate_limited"),
        ("DEBUG", "server_error"),
    ]
    assert all(r.wait_seconds >= 0 for r in retried)
