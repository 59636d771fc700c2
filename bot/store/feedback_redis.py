"""Feedback votes in Redis (the `FeedbackStore` role of `RedisStore`).

Keys, all under the `{feedback}` hash tag (one shard, so a vote's transaction may touch them
together in a Cluster too):

    P{feedback}:v:<id>     string  the vote's JSON, expiring after VOTE_TTL_SECONDS
    P{feedback}:log        zset    vote ids by the time of their latest click (bounded)
    P{feedback}:c:<day>    hash    `c|<scope>|up`… counters of that UTC day, expiring like usage

A vote is written when it is clicked, never on the answer path. Replacing an earlier vote
moves its count from the old day's field to the new one in the same transaction (WATCH on the
vote key, so two clicks at once cannot both count).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.store.errors import StoreUnavailable
from bot.store.votes import VOTE_LOG_MAX, VOTE_TTL_SECONDS, FeedbackStore, Vote, VoteCounts


class RedisVotes(FeedbackStore):
    """Mixed into `RedisStore`: uses its client `r`, `keys` and `_guard`."""

    async def record_vote(self, vote: Vote) -> Vote | None:
        from redis.exceptions import WatchError

        k = self.keys  # type: ignore[attr-defined]
        key, log = k.feedback_vote(vote.id), k.feedback_log()
        async with self._guard():  # type: ignore[attr-defined]
            for _ in range(5):
                async with self.r.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
                    try:
                        await pipe.watch(key)
                        raw = await pipe.get(key)
                        old = Vote.from_json(raw) if raw else None
                        pipe.multi()
                        if old is not None:
                            for f in old.counter_fields():
                                pipe.hincrby(k.feedback_day(old.day), f, -1)
                        day = k.feedback_day(vote.day)
                        for f in vote.counter_fields():
                            pipe.hincrby(day, f, 1)
                        pipe.expire(day, VOTE_TTL_SECONDS)
                        pipe.set(key, vote.to_json(), ex=VOTE_TTL_SECONDS)
                        pipe.zadd(log, {vote.id: vote.at})
                        pipe.zremrangebyscore(log, "-inf", f"({time.time() - VOTE_TTL_SECONDS}")
                        pipe.zremrangebyrank(log, 0, -VOTE_LOG_MAX - 1)
                        await pipe.execute()
                        return old
                    except WatchError:
                        continue
        raise StoreUnavailable("Redis: the vote kept changing under us")

    async def vote_counts(self, days: Sequence[str], dimension: str) -> dict[str, VoteCounts]:
        k = self.keys  # type: ignore[attr-defined]
        names = [f"{dimension}|up", f"{dimension}|down"]
        async with self._guard():  # type: ignore[attr-defined]
            async with self.r.pipeline(transaction=False) as pipe:  # type: ignore[attr-defined]
                for d in days:
                    pipe.hmget(k.feedback_day(d), names)
                res = await pipe.execute()
        return {
            d: VoteCounts(*(max(int(v or 0), 0) for v in vals))
            for d, vals in zip(days, res, strict=True)
        }

    async def recent_votes(self, since: float, limit: int) -> list[Vote]:
        k = self.keys  # type: ignore[attr-defined]
        async with self._guard():  # type: ignore[attr-defined]
            ids = await self.r.zrevrangebyscore(  # type: ignore[attr-defined]
                k.feedback_log(), "+inf", since, start=0, num=max(limit, 0)
            )
            if not ids:
                return []
            raws = await self.r.mget([k.feedback_vote(i) for i in ids])  # type: ignore[attr-defined]
        return [Vote.from_json(r) for r in raws if r]

    async def delete_votes(self, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        k = self.keys  # type: ignore[attr-defined]
        keys = [k.feedback_vote(i) for i in ids]
        async with self._guard():  # type: ignore[attr-defined]
            raws = await self.r.mget(keys)  # type: ignore[attr-defined]
            found = [(key, Vote.from_json(raw)) for key, raw in zip(keys, raws, strict=True) if raw]
            if not found:
                return 0
            async with self.r.pipeline(transaction=True) as pipe:  # type: ignore[attr-defined]
                for key, vote in found:
                    for f in vote.counter_fields():
                        pipe.hincrby(k.feedback_day(vote.day), f, -1)
                    pipe.delete(key)
                    pipe.zrem(k.feedback_log(), vote.id)
                await pipe.execute()
        return len(found)
