"""The store on a real local Redis Cluster: round trips per turn, script caches, slots.

The contract suite (test_store_contract.py) runs on the cluster too; these are the properties
only a cluster has. Round trips are counted where the client sends: one
`Connection.send_packed_command` is one request to one node, and a store call's requests go
out together, so the turn waits one round trip per call.
"""

from __future__ import annotations

import pytest

from bot.store import RedisStore, Usage
from bot.trimming import StoredMessage
from tests.support.stack import figure

SCOPES = ["slack:T:C", "slack:T", "global"]


@pytest.fixture
async def store(redis_cluster, key_prefix):
    s = RedisStore(
        redis_cluster.url, prefix=key_prefix, cluster=True, history_budget=1000, history_ttl=60
    )
    yield s
    await s.close()
    redis_cluster.delete_prefix(key_prefix)


def counting(monkeypatch) -> list[int]:
    """Patch the connection class; the returned list holds one entry per request sent."""
    from redis.asyncio.connection import Connection

    sent: list[int] = []
    original = Connection.send_packed_command

    async def count(self, command, check_health=True):
        sent.append(self.port)
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", count)
    return sent


async def one_turn(store: RedisStore, conv: str, n: int) -> None:
    turn = await store.acquire(conv, f"m{n}")
    assert turn is not None
    await store.load(conv, 1000, SCOPES)
    usage = Usage("slack:T", "slack:T:C", "slack:T:U", 5, 1)
    msgs = [StoredMessage("user", f"q{n}", 3), StoredMessage("assistant", f"a{n}", 3)]
    await store.commit(turn, msgs, usage)


async def test_a_turn_on_a_cluster_waits_three_round_trips_one_request_per_node(
    store, redis_cluster, key_prefix, monkeypatch
):
    conv = "slack:T:C:1.2"
    await one_turn(store, conv, 0)  # slot map learned, scripts loaded, connections open
    k = store.keys
    nodes = {
        name: redis_cluster.master_of(key).port
        for name, key in (
            ("conversation", k.conversation(conv, "h")),
            ("prompts", k.prompt("global")),
            ("usage", k.usage("2026-01-01")),
        )
    }
    sent = counting(monkeypatch)
    steps = []
    turn = await store.acquire(conv, "m1")
    steps.append(len(sent))
    await store.load(conv, 1000, SCOPES)
    steps.append(len(sent))
    usage = Usage("slack:T", "slack:T:C", "slack:T:U", 5, 1)
    await store.commit(turn, [StoredMessage("user", "q", 3)], usage)
    steps.append(len(sent))
    monkeypatch.undo()
    per_step = [steps[0], steps[1] - steps[0], steps[2] - steps[1]]
    # acquire: one script on the conversation's node; load: history + prompts; commit:
    # append/subscribe/release + usage counters — one request per distinct node, in parallel.
    want_load = len({nodes["conversation"], nodes["prompts"]})
    want_commit = len({nodes["conversation"], nodes["usage"]})
    assert per_step == [1, want_load, want_commit]
    assert set(sent[1:]) <= set(nodes.values())
    figure("cluster turn: round trips waited", 3)
    figure("cluster turn: requests sent", sum(per_step))


async def test_a_turn_sends_the_same_commands_to_the_cluster_as_to_one_redis(store, redis_cluster):
    conv = "slack:T:C:9.9"
    await one_turn(store, conv, 0)
    redis_cluster.reset_stats()
    await one_turn(store, conv, 1)
    calls = redis_cluster.commandstats()  # INFO commandstats of every master
    # Scripts begin, load, append, the usage counters and release (in the commit), one MGET for
    # the prompts; no SCRIPT EXISTS/LOAD, no retries, no redirections (the commands inside
    # scripts count too, so SET/EXPIRE are not compared here).
    assert calls.get("evalsha") == 5
    assert calls.get("mget") == 1
    assert calls.get("hincrby") == 9
    assert "script|load" not in calls and "script|exists" not in calls


async def test_a_promoted_replica_without_the_scripts_gets_them_again(store, redis_cluster):
    conv = "c"
    await one_turn(store, conv, 0)
    for node in redis_cluster.masters():
        node.client().script_flush()  # as on a replica just promoted, or a restarted node
    await one_turn(store, conv, 1)
    history = [m.content for m in (await store.load(conv, 1000, [])).history]
    assert history == ["q0", "a0", "q1", "a1"]  # nothing appended twice
    got = await store.usage([Usage("w", "c", "u", 0, 0).day], "w|slack:T")
    assert next(iter(got.values())).replies == 2


async def test_keys_of_other_conversations_spread_over_every_master(store, redis_cluster):
    k = store.keys
    ports = {redis_cluster.master_of(k.conversation(f"slack:T:C:{i}", "h")).port for i in range(30)}
    assert len(ports) == 3


async def test_doctor_reports_the_cluster_and_its_eviction_policy(redis_cluster, key_prefix):
    from bot.doctor import _check_redis
    from bot.settings import load_settings

    settings = load_settings(
        _env_file=None, redis_url=redis_cluster.url, redis_cluster=True, redis_key_prefix=key_prefix
    )
    checks = {c.name: c for c in await _check_redis(settings)}
    assert checks["redis"].ok, checks["redis"]
    assert "Redis Cluster: 3 masters answered" in checks["redis"].tried
    assert checks["eviction"].ok and checks["eviction"].tried == "maxmemory-policy noeviction"
