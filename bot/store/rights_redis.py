"""`RedisStore`'s budgets, metering and data-request parts (a mixin, to keep `redis.py` small).

`load_ops` / `read_load` add the meter script and the redaction placeholders to the load
pipeline, `commit_ops` the user index and new placeholders to the commit pipeline: no round
trip is added to a turn. The rest serves `!quota set` and `threadwise data`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.store.codec import AuditRecord, TurnRecord
from bot.store.keys import Keys
from bot.store.meters import RATE_TTL_SECONDS, MeterReading, MeterRequest
from bot.store.rights_base import DATA_AUDIT_KEEP, ERASED, ERASED_NAME, ERASED_SCOPE, USER_INDEX_MAX

RIGHTS_SCRIPTS: dict[str, tuple[str, ...]] = {
    "meter": ("meter",),
    "erase": ("erase",),
    "anonymise": ("anonymise",),
    "budget": ("budget",),
    "index": ("index",),
}


def meter_op(keys: Keys, script, req: MeterRequest) -> tuple:
    args: list = [req.rate_limit, RATE_TTL_SECONDS]
    for dim, default in req.dimensions:
        args += [dim, max(default, 0)]
    rate_key = keys.rate(req.rate_user, req.minute)
    return ("script", script, [keys.usage(req.day), keys.budgets(), rate_key], args)


def read_meter(req: MeterRequest, res: list) -> MeterReading:
    over, limited, *pairs = (int(x) for x in res)
    dims = [d for d, _ in req.dimensions]
    used = {d: pairs[2 * i] for i, d in enumerate(dims)}
    budgets = {d: pairs[2 * i + 1] for i, d in enumerate(dims)}
    return MeterReading(used, budgets, dims[over - 1] if over else None, bool(limited))


def load_ops(store, conversation: str, meter: MeterRequest | None, redactions: bool) -> list:
    """What `load` adds to its pipeline: the meter script, the redaction placeholders."""
    ops: list[tuple] = []
    if meter is not None:
        ops.append(meter_op(store.keys, store.rights_script["meter"], meter))
    if redactions:
        ops.append(("hgetall", store.keys.conversation(conversation, "r")))
    return ops


def read_load(
    meter: MeterRequest | None, redactions: bool, res: list
) -> tuple[MeterReading | None, dict[str, str]]:
    reading = read_meter(meter, res[0]) if meter is not None else None
    return reading, (dict(res[-1]) if redactions else {})


def commit_ops(store, conversation: str, record: TurnRecord | None) -> list:
    """What `commit` adds to its pipeline: the person's conversation index, new placeholders."""
    if record is None:
        return []
    keys, ttl = store.keys, store.history_ttl
    ops: list[tuple] = []
    if record.user:
        args = [conversation, time.time(), ttl, USER_INDEX_MAX]
        ops.append(("script", store.rights_script["index"], [keys.user_index(record.user)], args))
    if record.redactions:
        key = keys.conversation(conversation, "r")
        ops += [("hset", key, None, None, record.redactions), ("expire", key, ttl)]
    return ops


class RedisRights:
    """Mixin for `RedisStore`: uses its `r`, `keys`, `_guard`, `_again`, `retention` and
    `rights_script` (the registered scripts of RIGHTS_SCRIPTS)."""

    def audit_args(self) -> list:
        """keep, retention (s), now: what the audit scripts need to prune a list."""
        ret = self.retention
        return [ret.audit_keep, ret.audit_seconds, time.time()]

    async def budgets(self, dimensions: Sequence[str]) -> dict[str, int | None]:
        if not dimensions:
            return {}
        async with self._guard():
            vals = await self.r.hmget(self.keys.budgets(), list(dimensions))
        pairs = zip(dimensions, vals, strict=True)
        return {d: (int(v) if v is not None else None) for d, v in pairs}

    async def change_budget(self, record: AuditRecord) -> str | None:
        async with self._guard():
            return await self.rights_script["budget"](
                keys=[self.keys.budgets(), self.keys.budget_audit()],
                args=[record.scope, record.new or "", record.to_json(), *self.audit_args()],
            )

    async def budget_history(self, limit: int = 10) -> list[AuditRecord]:
        async with self._guard():
            raw = await self.r.lrange(self.keys.budget_audit(), 0, limit - 1)
        return [AuditRecord.from_json(x) for x in raw]

    async def user_conversations(self, user: str) -> list[str]:
        async with self._guard():
            return list(await self.r.zrange(self.keys.user_index(user), 0, -1))

    async def erase_user_messages(self, conversation: str, user: str) -> int:
        k = self.keys
        async with self._guard():
            return int(
                await self.rights_script["erase"](
                    keys=[k.conversation(conversation, "h"), k.conversation(conversation, "t")],
                    args=[user, self.history_ttl],
                )
            )

    async def forget_user_index(self, user: str) -> None:
        async with self._guard():
            await self.r.delete(self.keys.user_index(user))

    async def delete_conversation(self, conversation: str) -> bool:
        k = self.keys
        async with self._guard():
            n = await self.r.delete(*(k.conversation(conversation, p) for p in "htar"))
        return bool(n)

    async def record_data_request(self, record: AuditRecord) -> None:
        async with self._guard():
            async with self.r.pipeline(transaction=False) as pipe:
                key = self.keys.data_audit()
                pipe.lpush(key, record.to_json())
                pipe.ltrim(key, 0, DATA_AUDIT_KEEP - 1)
                if self.retention.audit_days:
                    pipe.expire(key, self.retention.audit_seconds)
                await pipe.execute()

    async def data_requests(self, limit: int = 10) -> list[AuditRecord]:
        async with self._guard():
            raw = await self.r.lrange(self.keys.data_audit(), 0, limit - 1)
        return [AuditRecord.from_json(x) for x in raw]

    async def audited_scopes(self) -> list[str]:
        async with self._guard():
            return sorted(await self.r.smembers(self.keys.audited()))

    async def anonymise_audits(self, who: str, about: str = "") -> int:
        # One call per hash slot (prompts, usage), so it also runs on a Redis Cluster.
        prompt_lists = [self.keys.audit(s) for s in await self.audited_scopes()]
        changed = 0
        async with self._guard():
            for lists in (prompt_lists, [self.keys.budget_audit()]):
                if lists:
                    changed += int(
                        await self.rights_script["anonymise"](
                            keys=lists, args=[who, ERASED, ERASED_NAME, about, ERASED_SCOPE]
                        )
                    )
        return changed

    async def erase_usage(self, dimension: str, days: Sequence[str]) -> int:
        names = [f"{dimension}|prompt", f"{dimension}|completion", f"{dimension}|replies"]
        async with self._guard():
            async with self.r.pipeline(transaction=False) as pipe:
                for d in days:
                    pipe.hdel(self.keys.usage(d), *names)
                res = await pipe.execute()
        return sum(int(x) for x in res)
