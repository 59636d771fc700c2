"""The Redis side of the state every conversation shares, mixed into `RedisStore`: prompts and
their audit (`{prompts}`), usage counters (`{usage}`) and the adapters' small cache.

Uses the store's client, keys, guard and registered scripts; the per-turn reads and writes of
these keys ride in the turn's own pipelines (`RedisStore.load` / `commit`), not here.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.store.codec import AuditRecord, Usage, UsageTotals


class RedisShared:
    # -- prompts

    async def get_prompts(self, scopes: Sequence[str]) -> dict[str, str | None]:
        if not scopes:
            return {}
        async with self._guard():
            vals = await self.r.mget([self.keys.prompt(s) for s in scopes])
        return dict(zip(scopes, vals, strict=True))

    async def change_prompt(self, record: AuditRecord) -> str | None:
        action, k = ("reset" if record.new is None else "set"), self.keys
        async with self._guard():
            return await self._prompt(
                keys=[k.prompt(record.scope), k.audit(record.scope), k.audited()],
                args=[record.new or "", record.to_json(), action, *self.audit_args()],
            )

    async def prompt_history(self, scope: str, limit: int = 10) -> list[AuditRecord]:
        async with self._guard():
            raw = await self.r.lrange(self.keys.audit(scope), 0, limit - 1)
        return [AuditRecord.from_json(x) for x in raw]

    # -- usage

    async def usage(self, days: Sequence[str], dimension: str) -> dict[str, UsageTotals]:
        names = [f"{dimension}|{f}" for f in ("prompt", "completion", "replies", "estimated")]
        async with self._guard():
            async with self.r.pipeline(transaction=False) as pipe:
                for d in days:
                    pipe.hmget(self.keys.usage(d), names)
                res = await pipe.execute()
        return {
            d: UsageTotals(*(int(v or 0) for v in vals)) for d, vals in zip(days, res, strict=True)
        }

    def usage_op(self, usage: Usage) -> tuple:
        """The day's counters of one turn, added in one script (one command, not one each)."""
        pairs = [x for f, v in usage.fields().items() for x in (f, v)]
        args = [self.retention.usage_seconds, *pairs]
        return ("script", self._usage_script, [self.keys.usage(usage.day)], args)

    async def add_usage(self, usage: Usage) -> None:
        await self._pipeline([self.usage_op(usage)])

    # -- cache

    async def cache_get(self, key: str) -> str | None:
        async with self._guard():
            return await self.r.get(self.keys.cache(key))

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        async with self._guard():
            await self.r.set(self.keys.cache(key), value, ex=ttl_seconds)

    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        async with self._guard():
            return bool(await self.r.set(self.keys.cache(key), value, ex=ttl_seconds, nx=True))
