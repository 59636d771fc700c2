"""Fault 1: Redis goes away mid-load and comes back (a `redis-server` this test owns).

The service answers a steady stream of messages in several Slack threads and a Teams chat; one
conversation's turn is in flight (holding its Redis lock) when Redis shuts down (`SHUTDOWN SAVE`,
as a restart with persistence does). While Redis is down:

- `/readyz` is 503 naming the store (and `/healthz` stays 200: the process is fine);
- every message addressed to the bot gets one short apology — not silence, not a crash;
- chatter in threads the bot cannot tell are its own gets no apology (no spam);
- the reply already being streamed is delivered once, with no contradicting apology after it.

After Redis is back (same port, same data), every conversation is answered with its memory
intact, and the conversation whose lock went stale is answered once the lease expires — no
conversation stays locked forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.replies import APOLOGY_STORE
from tests.reliability.conftest import new_stack
from tests.support.fakes.fake_openai import Hang
from tests.support.stack import (
    assert_no_internals,
    channel,
    figure,
    log_records,
    mention,
    message,
    slack_finished,
    slack_key,
    slack_thread,
    teams_key,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

LEASE_SECONDS = 30  # RedisStore's lock lease


async def status(url: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
            return r.status


async def wait_status(url: str, want: int, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while (got := await status(url)) != want:
        assert time.monotonic() - started < timeout, f"{url} stayed {got}, wanted {want}"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def shutdown_save(server) -> None:
    """Stop Redis the way a restart with persistence does: save the data set, then exit."""
    r = aioredis.Redis.from_url(server.url)
    with contextlib.suppress(Exception):
        await r.shutdown(save=True)
    with contextlib.suppress(Exception):
        await r.aclose()
    await asyncio.to_thread(server.proc.wait, 10)
    server.proc = None


async def test_redis_outage_mid_load_apologises_then_recovers_with_memory(
    model, slack, connector, redis_server
):
    stack = new_stack(model, slack, connector, redis_server.url)
    stack.reset()
    svc = await stack.start()
    try:
        model.configure(tokens_per_second=40)

        # -- before: six Slack threads and a Teams chat, two turns each ---------------------
        threads = [(channel(), ts()) for _ in range(6)]
        for ch, root in threads:
            assert await stack.send(mention(f"<@UBOT> first in {ch}", ch=ch, at=root)) == 200
        act = stack.activity("group_chat_mention", text="<at>Threadwise</at> first in teams")
        teams_conv = act["conversation"]["id"]
        assert await stack.teams(act) == 200
        for ch, root in threads:
            await slack_thread(slack, ch, root, 1, quiet=0)
        await teams_thread(connector, teams_conv, 1, quiet=0)
        for ch, root in threads:
            assert await stack.send(message(f"second in {ch}", ch=ch, thread=root)) == 200
        assert await stack.teams(stack.follow_up(act, "<at>Threadwise</at> second in teams")) == 200
        for ch, root in threads:
            await slack_thread(slack, ch, root, 2, quiet=0)
        await teams_thread(connector, teams_conv, 2, quiet=0)
        before = {ch: await stack.stored_when(slack_key(ch, root), 4) for ch, root in threads}
        before["teams"] = await stack.stored_when(teams_key(act), 4)
        assert all(len(h) == 4 for h in before.values()), before

        # -- a turn in flight holds its conversation's lock when Redis goes -----------------
        busy_ch, busy_root = threads[0]
        model.script(Hang(2.5))
        sent = len(model.chat_requests)
        assert await stack.send(message("in flight", ch=busy_ch, thread=busy_root)) == 200
        await wait_until(lambda: len(model.chat_requests) > sent)  # the lock is held now
        down_at = time.monotonic()
        await shutdown_save(redis_server)

        # -- during ------------------------------------------------------------------------
        assert await wait_status(svc.url + "/readyz", 503) < 60
        async with aiohttp.ClientSession() as http:
            async with http.get(svc.url + "/readyz") as r:
                assert (await r.json())["reason"] == "store"  # the detail is in the log
        assert await status(svc.url + "/healthz") == 200
        figure("faults injected (Redis outage)")

        outage_msgs = []
        for ch, root in threads[1:]:
            assert await stack.send(message(f"during in {ch}", ch=ch, thread=root)) == 200
            outage_msgs.append((ch, root))
        new_ch, new_root = channel(), ts()
        assert await stack.send(mention("<@UBOT> brand new", ch=new_ch, at=new_root)) == 200
        assert await stack.teams(stack.follow_up(act, "<at>Threadwise</at> during in teams")) == 200
        stranger_ch, stranger_root = channel(), ts()
        assert (
            await stack.send(message("chatter in a thread", ch=stranger_ch, thread=stranger_root))
            == 200
        )

        print(f"\n{time.monotonic() - down_at:.1f}s: messages sent during the outage")
        started = time.monotonic()
        for ch, root in outage_msgs:
            texts = await slack_thread(slack, ch, root, 3, quiet=0, timeout=20)
            assert texts[2] == APOLOGY_STORE
        assert await slack_thread(slack, new_ch, new_root, 1, quiet=0) == [APOLOGY_STORE]
        assert (await teams_thread(connector, teams_conv, 3, quiet=0))[2] == APOLOGY_STORE
        apology_seconds = time.monotonic() - started
        assert apology_seconds < 15, f"apologies took {apology_seconds:.1f}s"
        assert_no_internals(APOLOGY_STORE)
        # The reply in flight is delivered, once, with nothing contradicting it.
        busy = await slack_thread(slack, busy_ch, busy_root, 3, quiet=0, timeout=20)
        await slack.settle(0.5)
        busy = [m.text for m in slack_finished(slack, busy_ch, busy_root)]
        assert busy[2] == "Echo: in flight" and len(busy) == 3, busy
        for ch, root in outage_msgs:
            assert len(slack_finished(slack, ch, root)) == 3
        assert slack.thread(stranger_ch, stranger_root) == [], "apologised in a stranger's thread"
        figure("messages answered during the Redis outage", len(outage_msgs) + 3)

        # -- after: same port, same data ------------------------------------------------------
        await asyncio.sleep(max(0.0, 3 - (time.monotonic() - down_at)))  # a few seconds down
        redis_server.start()
        assert await wait_status(svc.url + "/readyz", 200) < 10
        print(f"{time.monotonic() - down_at:.1f}s: Redis is back")

        # The stale lock of the conversation that was mid-turn expires with its lease.
        stale_started = time.monotonic()
        stale = asyncio.create_task(
            stack.send(message("after, where the lock was", ch=busy_ch, thread=busy_root))
        )
        for ch, root in threads[1:]:
            assert await stack.send(message(f"after in {ch}", ch=ch, thread=root)) == 200
        assert await stack.teams(stack.follow_up(act, "<at>Threadwise</at> after in teams")) == 200
        for ch, root in threads[1:]:
            texts = await slack_thread(slack, ch, root, 4, quiet=0)
            assert texts[3] == f"Echo: after in {ch}", texts
            history = await stack.stored_when(slack_key(ch, root), 6)
            assert history == [*before[ch], ("user", f"after in {ch}"), ("assistant", texts[3])]
        assert (await teams_thread(connector, teams_conv, 4, quiet=0))[3] == (
            "Echo: after in teams"
        )
        assert (await stack.stored(teams_key(act)))[:4] == before["teams"]
        # The model saw each conversation's whole memory (and not the failed outage turn).
        for request in model.chat_requests[-len(threads) :]:
            contents = [m["content"] for m in request.messages]
            assert "during" not in " ".join(contents)
        assert await stale == 200
        texts = await slack_thread(slack, busy_ch, busy_root, 4, timeout=LEASE_SECONDS + 15)
        waited = time.monotonic() - stale_started
        assert texts[3] == "Echo: after, where the lock was", texts
        assert waited <= LEASE_SECONDS + 5, f"the stale lock held {waited:.0f}s"
        figure("stale locks expired after an outage")
        figure("fault scenarios survived")
        print(
            f"\nRedis outage: apologies within {apology_seconds:.1f}s; stale lock released "
            f"after {waited:.1f}s"
        )
        records = log_records(svc)
        assert not [r for r in records if r.get("msg") == "turn failed"], "unexpected crash path"
    finally:
        model.configure(tokens_per_second=None)
        await stack.close()


async def test_pooled_connections_dead_after_a_restart_fail_no_turn(redis_server):
    """Every idle pooled connection dies with a Redis restart; none of them may fail a turn."""
    from bot.store import RedisStore

    store = RedisStore(redis_server.url, prefix="p:", history_budget=1000, history_ttl=60)
    try:
        convs = [f"slack:T:C{i}" for i in range(12)]
        await asyncio.gather(*(store.is_subscribed(c) for c in convs))  # a pool of connections
        await shutdown_save(redis_server)
        redis_server.start()
        results = await asyncio.gather(
            *(store.acquire(c, f"m{i}", 5) for i, c in enumerate(convs)), return_exceptions=True
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        assert not failed, f"{len(failed)} of {len(convs)} turns failed after Redis came back"
        for turn in results:
            await store.release(turn)
        figure("faults injected (Redis restart, stale pool)")
    finally:
        await store.close()


async def test_claim_retried_after_a_dropped_connection_is_not_a_duplicate(redis_url, key_prefix):
    """The claim script may run twice for one delivery (a retry); only another token is a dup."""
    from bot.store import RedisStore

    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    try:
        keys = [f"{key_prefix}{{c}}:{k}" for k in ("o:m1", "q", "l", "a")]
        assert await store._begin(keys=keys, args=[60, "token-a", 30000, 0, 0]) == 1
        assert await store._begin(keys=keys, args=[60, "token-a", 30000, 0, 0]) == 1  # the retry
        assert await store._begin(keys=keys, args=[60, "token-b", 30000, 0, 0]) == -1  # a dup
    finally:
        await store.close()
