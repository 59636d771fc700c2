"""One contract, two stores: Redis (real server) and the in-process store."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from bot.store import (
    AuditRecord,
    MemoryStore,
    NotSubscribed,
    RedisStore,
    Usage,
    decode_message,
)
from bot.trimming import StoredMessage


def msg(role: str, content: str, tokens: int = 10, name: str | None = None) -> StoredMessage:
    return StoredMessage(role, content, tokens, name)


@pytest.fixture(params=["redis", "cluster", "memory"])
async def make(request, redis_url, key_prefix):
    made = []
    # A real local Redis Cluster (tests/support/cluster.py), only for the "cluster" runs.
    cluster = request.getfixturevalue("redis_cluster") if request.param == "cluster" else None

    def factory(**kw):
        kw.setdefault("history_budget", 10_000)
        kw.setdefault("history_ttl", 3600)
        if request.param == "redis":
            s = RedisStore(redis_url, prefix=key_prefix, **kw)
        elif cluster is not None:
            s = RedisStore(cluster.url, prefix=key_prefix, cluster=True, **kw)
        else:
            s = MemoryStore(**kw)
        made.append(s)
        return s

    factory.kind = request.param
    yield factory
    for s in made:
        await s.close()
    if cluster is not None:
        cluster.delete_prefix(key_prefix)


async def turn_of(store, conv, n, once=None):
    turn = await store.acquire(conv, once or f"m{n}")
    assert turn is not None
    return await store.commit(
        turn, [msg("user", f"q{n}", 10, "Al"), msg("assistant", f"a{n}", 12)], None
    )


async def test_commit_then_load_returns_turns_in_order_with_counts_and_names(make):
    store = make()
    for i in range(3):
        await turn_of(store, "c1", i)
    ctx = await store.load("c1", 10_000, [])
    assert [m.content for m in ctx.history] == ["q0", "a0", "q1", "a1", "q2", "a2"]
    assert ctx.history[0] == msg("user", "q0", 10, "Al")
    assert ctx.history[1].tokens == 12


async def test_load_returns_newest_suffix_within_budget_starting_with_user(make):
    store = make()
    for i in range(5):
        await turn_of(store, "c1", i)
    ctx = await store.load("c1", 22 * 2 + 12, [])  # two turns and a lone assistant reply fit
    assert [m.content for m in ctx.history] == ["q3", "a3", "q4", "a4"]
    assert (await store.load("c1", 5, [])).history == []


async def test_commit_trims_oldest_whole_messages_to_the_budget(make):
    store = make(history_budget=50)
    for i in range(6):
        dropped = await turn_of(store, "c1", i)
    stored = await store.history("c1")
    assert sum(m.tokens for m in stored) <= 50
    assert stored[0].role == "user"
    assert [m.content for m in stored] == ["q4", "a4", "q5", "a5"]
    assert dropped == 2


async def test_fifty_concurrent_writers_lose_nothing_and_keep_pairs_together(make):
    store = make()

    async def writer(i):
        await asyncio.sleep(0.001 * (i % 5))
        await turn_of(store, "busy", i)

    await asyncio.gather(*(writer(i) for i in range(50)))
    stored = await store.history("busy")
    assert len(stored) == 100
    pairs = [(stored[k].content, stored[k + 1].content) for k in range(0, 100, 2)]
    assert all(q[1:] == a[1:] and q[0] == "q" and a[0] == "a" for q, a in pairs)
    assert sorted(int(q[1:]) for q, _ in pairs) == list(range(50))


async def test_two_replicas_take_turns_on_one_conversation(make):
    if make.kind == "memory":
        pytest.skip("replicas share Redis, not memory")
    a, b = make(), make()
    stores = [a, b]

    async def writer(i):
        await turn_of(stores[i % 2], "shared", i)

    await asyncio.gather(*(writer(i) for i in range(20)))
    assert len(await a.history("shared")) == 40


async def test_lock_serves_waiters_in_arrival_order(make):
    store = make()
    first = await store.acquire("c", "m0")
    order = []

    async def waiter(i):
        t = await store.acquire("c", f"w{i}")
        order.append(i)
        await asyncio.sleep(0.005)
        await store.release(t)

    tasks = []
    for i in range(5):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0.02)  # arrive one after another
    await store.release(first)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]


async def test_exactly_once_marker_drops_the_second_delivery(make):
    store = make()
    t = await store.acquire("c", "post-1")
    await store.release(t)
    assert await store.acquire("c", "post-1") is None
    t2 = await store.acquire("c", "post-2")
    assert t2 is not None
    await store.release(t2)


async def test_a_lock_whose_holder_died_expires_with_its_lease(make):
    if make.kind == "memory":
        pytest.skip("one process: a holder cannot die without its event loop")
    crashed, replica = make(lock_lease=0.3), make(lock_lease=0.3)
    dead = await crashed.acquire("c", "m1")
    dead.renewer.cancel()  # the holder stops renewing, as a crashed replica would
    started = time.monotonic()
    t = await replica.acquire("c", "m2")
    # Waited for the lease (0.3 s), and the lock did expire (not held for ever).
    assert 0.2 < time.monotonic() - started < 60
    await replica.release(t)


async def test_a_renewed_lock_outlives_its_lease(make):
    if make.kind == "memory":
        pytest.skip("the in-process lock has no lease")
    store, replica = make(lock_lease=0.3), make(lock_lease=0.3)
    held = await store.acquire("c", "m1")
    other = asyncio.create_task(replica.acquire("c", "m2"))
    await asyncio.sleep(1.0)  # three leases: renewal keeps it ours
    assert not other.done()
    await store.release(held)
    t = await asyncio.wait_for(other, 2)
    await replica.release(t)


async def test_history_expires_after_ttl(make, redis_url, key_prefix):
    store = make(history_ttl=1)
    await turn_of(store, "c", 1)
    if make.kind == "redis":
        r = aioredis.Redis.from_url(redis_url)
        ttl = await r.ttl(f"{key_prefix}{{c}}:h")
        await r.aclose()
        assert 0 < ttl <= 1
    await asyncio.sleep(1.3)
    assert await store.history("c") == []


async def test_clear_forgets_history_but_the_bot_stays_subscribed(make):
    store = make()
    await turn_of(store, "c", 1)
    assert await store.is_subscribed("c")
    await store.clear("c")
    assert await store.history("c") == []
    assert await store.is_subscribed("c")
    assert not await store.is_subscribed("other")


async def test_a_reply_without_a_mention_is_claimed_only_in_a_subscribed_thread(make):
    store = make()
    with pytest.raises(NotSubscribed):
        await store.acquire("c", "reply-1", 5, only_if_subscribed=True)
    # Refused before the claim: the post stays unclaimed, the lock free.
    mention = await store.acquire("c", "mention", 5, subscribe=True)
    assert mention is not None
    assert await store.is_subscribed("c")  # in the claim itself, before any commit
    await store.release(mention)
    reply = await store.acquire("c", "reply-1", 5, only_if_subscribed=True)
    assert reply is not None
    await store.release(reply)
    assert not await store.is_subscribed("other")
    await store.subscribe("other")
    assert await store.is_subscribed("other")


async def test_prompt_changes_return_old_text_and_audit_newest_first(make):
    store = make()

    def rec(new, who="slack:U1"):
        return AuditRecord(time.time(), "global", who, "Ann", "set" if new else "reset", None, new)

    assert await store.change_prompt(rec("one")) is None
    assert await store.change_prompt(rec("two")) == "one"
    assert await store.change_prompt(rec(None)) == "two"
    assert await store.get_prompts(["x", "global"]) == {"x": None, "global": None}
    hist = await store.prompt_history("global")
    assert [(h.action, h.old, h.new) for h in hist] == [
        ("reset", "two", None),
        ("set", "one", "two"),
        ("set", None, "one"),
    ]


async def test_usage_is_added_per_day_and_dimension(make):
    store = make()
    u = Usage("slack:T1", "slack:T1:C1", "slack:T1:U1", 100, 20, day="2026-01-02")
    turn = await store.acquire("c", "m1")
    await store.commit(turn, [], u)
    turn = await store.acquire("c", "m2")
    await store.commit(turn, [], u)
    got = await store.usage(["2026-01-02", "2026-01-01"], "c|slack:T1:C1")
    assert got["2026-01-02"].prompt_tokens == 200
    assert got["2026-01-02"].completion_tokens == 40
    assert got["2026-01-02"].replies == 2
    assert got["2026-01-01"].replies == 0


async def test_cache_get_set_add(make):
    store = make()
    assert await store.cache_get("k") is None
    await store.cache_set("k", "v", 60)
    assert await store.cache_get("k") == "v"
    assert await store.cache_add("once", "1", 60) is True
    assert await store.cache_add("once", "1", 60) is False


def test_encoding_round_trips_tabs_and_newlines():
    m = StoredMessage("user", "a\tb\nc\u200b\x00", 7, "Al")
    from bot.store import encode_message

    assert decode_message(encode_message(m)) == m


async def test_redis_keys_of_a_conversation_share_one_hash_slot(redis_url, key_prefix):
    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    await turn_of(store, "slack:T:C:1.2", 1)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = [k async for k in r.scan_iter(match=f"{key_prefix}*")]
    await r.aclose()
    await store.close()
    conv_keys = [k for k in keys if "slack:T:C:1.2" in k]
    assert conv_keys and all("{slack:T:C:1.2}" in k for k in conv_keys)


async def test_a_lost_script_cache_is_reloaded_without_double_counting(redis_url, key_prefix):
    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    await turn_of(store, "c", 1)
    r = aioredis.Redis.from_url(redis_url)
    await r.script_flush()  # as after a Redis restart
    await r.aclose()
    turn = await store.acquire("c", "m2")
    u = Usage("slack:T", "slack:T:C", "slack:T:U", 5, 1, day="2026-01-01")
    await store.commit(turn, [msg("user", "q2"), msg("assistant", "a2")], u)
    assert [m.content for m in (await store.load("c", 1000, [])).history][-2:] == ["q2", "a2"]
    assert (await store.usage(["2026-01-01"], "w|slack:T"))["2026-01-01"].prompt_tokens == 5
    await store.close()


async def test_an_uncontended_turn_costs_three_round_trips(redis_url, key_prefix, monkeypatch):
    from redis.asyncio.connection import Connection

    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    await turn_of(store, "c", 0)  # scripts loaded, connections open
    sends = 0
    original = Connection.send_packed_command

    async def counting(self, command, check_health=True):
        nonlocal sends
        sends += 1
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    turn = await store.acquire("c", "m1")
    await store.load("c", 1000, ["slack:T:C", "slack:T", "global"])
    u = Usage("slack:T", "slack:T:C", "slack:T:U", 5, 1)
    await store.commit(turn, [msg("user", "q"), msg("assistant", "a")], u)
    monkeypatch.undo()
    await store.close()
    assert sends == 3


async def test_subscribing_or_checking_the_subscription_adds_no_round_trip(
    redis_url, key_prefix, monkeypatch
):
    from redis.asyncio.connection import Connection

    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    await turn_of(store, "c", 0)  # scripts loaded, connections open
    sends = 0
    original = Connection.send_packed_command

    async def counting(self, command, check_health=True):
        nonlocal sends
        sends += 1
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    for n, flags in enumerate([{"subscribe": True}, {"only_if_subscribed": True}]):
        sends = 0
        turn = await store.acquire("c", f"s{n}", **flags)
        assert sends == 1, flags
        await store.release(turn)
    monkeypatch.undo()
    await store.close()
