"""Both stores keep feedback votes alike: one per person per answer, counted per day, bounded."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from bot.store import MemoryStore, RedisStore
from bot.store.votes import VOTE_TTL_SECONDS, Vote, VoteCounts


@pytest.fixture(params=["redis", "memory"])
async def store(request, redis_url, key_prefix):
    if request.param == "redis":
        s = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    else:
        s = MemoryStore(history_budget=1000, history_ttl=60)
    s.kind = request.param
    yield s
    await s.close()


def vote(value: str = "up", *, user: str = "U1", answer: str = "A1", **kw) -> Vote:
    return Vote(
        platform="slack",
        workspace_scope="slack:T1",
        channel_scope=kw.pop("channel_scope", "slack:T1:C1"),
        conversation="slack:T1:C1:100.1",
        answer=answer,
        user=f"slack:T1:{user}",
        value=value,
        deployment="gpt-4o",
        prompt_scope="default",
        **kw,
    )


async def test_a_second_vote_by_the_same_person_replaces_the_first(store):
    assert await store.record_vote(vote("up", comment="great")) is None
    old = await store.record_vote(vote("down"))
    assert old is not None and (old.value, old.comment) == ("up", "great")
    day = vote().day
    assert (await store.vote_counts([day], "c|slack:T1:C1"))[day] == VoteCounts(0, 1)
    [only] = await store.recent_votes(0, 10)
    assert only.value == "down" and only.deployment == "gpt-4o"


async def test_votes_are_counted_per_channel_and_workspace_and_listed_newest_first(store):
    await store.record_vote(vote("up", user="U1", at=time.time() - 2))
    await store.record_vote(vote("up", user="U2", at=time.time() - 1))
    await store.record_vote(vote("down", user="U3", channel_scope="slack:T1:C2"))
    day = vote().day
    assert (await store.vote_counts([day], "c|slack:T1:C1"))[day] == VoteCounts(2, 0)
    assert (await store.vote_counts([day], "w|slack:T1"))[day] == VoteCounts(2, 1)
    assert (await store.vote_counts(["2001-01-01"], "w|slack:T1"))["2001-01-01"] == VoteCounts()
    assert [v.user for v in await store.recent_votes(0, 10)] == [
        "slack:T1:U3",
        "slack:T1:U2",
        "slack:T1:U1",
    ]
    assert len(await store.recent_votes(0, 2)) == 2
    assert await store.recent_votes(time.time() + 60, 10) == []


async def test_a_vote_changed_on_a_later_day_moves_its_count_to_that_day(store):
    await store.record_vote(vote("up", day="2026-11-30"))
    await store.record_vote(vote("down", day="2026-12-01"))
    counts = await store.vote_counts(["2026-11-30", "2026-12-01"], "c|slack:T1:C1")
    assert counts == {"2026-11-30": VoteCounts(0, 0), "2026-12-01": VoteCounts(0, 1)}


async def test_redis_votes_expire_like_usage(store, redis_url, key_prefix):
    if store.kind != "redis":
        pytest.skip("TTLs are Redis's")
    await store.record_vote(vote())
    r = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{key_prefix}*")]
        assert {k.decode().split("}:")[1][:2] for k in keys} == {"v:", "lo", "c:"}
        for k in keys:
            if not k.decode().endswith(":log"):
                ttl = await r.ttl(k)
                assert 0 < ttl <= VOTE_TTL_SECONDS
    finally:
        await r.aclose()


async def test_deleting_votes_by_id_removes_them_and_their_counts(store):
    await store.record_vote(vote("up", user="U1"))
    await store.record_vote(vote("down", user="U2"))
    day = vote().day
    assert await store.delete_votes([vote(user="U1").id, "no-such-vote"]) == 1
    assert [v.user for v in await store.recent_votes(0, 10)] == ["slack:T1:U2"]
    assert (await store.vote_counts([day], "c|slack:T1:C1"))[day] == VoteCounts(0, 1)
    assert await store.delete_votes([]) == 0


async def test_a_users_votes_are_exported_and_erased_by_a_data_request(store):
    from bot.rights import DataRights, feedback_sources, parse_user

    await store.record_vote(vote("up", user="U1", comment="clear answer"))
    await store.record_vote(vote("down", user="U2", answer="A2"))
    rights = DataRights(store, sources=feedback_sources(store))
    lines: list[dict] = []
    await rights.export(parse_user("slack:T1:U1"), lines.append, "cli:test")
    assert any(line.get("comment") == "clear answer" for line in lines), lines
    await rights.delete_user(parse_user("slack:T1:U1"), "cli:test")
    assert [v.user for v in await store.recent_votes(0, 10)] == ["slack:T1:U2"]
