"""The summary's hand-over survives a crash: `serve` killed (SIGKILL) after trimming moved old
messages out of the history and before their fold was written loses none of them — the next
turn, on a new process, folds them into the summary."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
import redis.asyncio as aioredis

from bot.store import Summary, decode_message
from tests.reliability.conftest import new_stack
from tests.support.stack import channel, mention, message, slack_finished, slack_key, ts
from tests.unit.test_summary import FACTS, is_fold, summarising, turn_text

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

SETTINGS = {
    "HISTORY_SUMMARY": "true",
    "TOKEN_LIMIT": "700",
    "MAX_RESPONSE_TOKENS": "100",
    "SUMMARY_MAX_TOKENS": "150",
}


async def _until(cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"{what} not met in time"
        await asyncio.sleep(0.05)


async def test_a_crash_between_trim_and_summary_loses_no_message(
    model, slack, connector, redis_url
):
    stack = new_stack(model, slack, connector, redis_url, **SETTINGS)
    stack.reset()
    hold = asyncio.Event()

    async def folds_wait(messages):
        if is_fold(messages):
            await hold.wait()
        return summarising(messages)

    model.reply_fn = folds_wait
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    ch, root = channel(), ts()
    conv = slack_key(ch, root)
    tag = f"{stack.prefix}{{{conv}}}"
    try:
        svc = await stack.start()
        for i in range(14):
            event = (
                mention(f"<@UBOT> {turn_text(i)}", ch=ch, at=root)
                if i == 0
                else message(turn_text(i), ch=ch, thread=root)
            )
            assert await stack.send(event) == 200
            await slack.wait_for(lambda s, n=i + 1: len(slack_finished(s, ch, root)) >= n, 30)

        async def fold_started() -> bool:
            return any(is_fold(q.messages) for q in model.chat_requests)

        await _until(fold_started, what="a fold request reaching the model")
        pending = [decode_message(x).content for x in await r.lrange(f"{tag}:sp", 0, -1)]
        assert any(FACTS[0] in p for p in pending)
        history = [decode_message(x).content for x in await r.lrange(f"{tag}:h", 0, -1)]
        assert not any(FACTS[0] in h for h in history)  # moved out, not yet summarised

        svc.proc.send_signal(signal.SIGKILL)  # mid-fold: the model never answers it
        await svc.proc.wait()
        hold.set()

        # A new process; the dead one's fold lease runs out by itself.
        again = await stack.start()
        assert await stack.send(message(turn_text(14), ch=ch, thread=root), svc=again) == 200

        async def summarised() -> bool:
            s = Summary.decode(await r.get(f"{tag}:s"))
            return s is not None and all(f in s.text for f in FACTS)

        # The dead process's fold lease holds the summary for at most one lease (20 s); the
        # thread's turns keep coming, and the first one after it expires folds what is pending.
        deadline = time.monotonic() + 90
        i = 15
        while not await summarised():
            assert time.monotonic() < deadline, "the pending messages were not folded"
            assert await stack.send(message(turn_text(i), ch=ch, thread=root), svc=again) == 200
            await slack.wait_for(lambda s, n=i + 1: len(slack_finished(s, ch, root)) >= n, 30)
            await asyncio.sleep(1.0)
            i += 1
        assert all(len(m.text) > 0 for m in slack_finished(slack, ch, root))
    finally:
        hold.set()
        model.reply_fn = None
        await r.aclose()
        await stack.close()
