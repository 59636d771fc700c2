"""`MemoryStore`: the same contract in one process, for the console and running without Redis."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Hashable, Sequence

from bot.store.base import ONCE_TTL_SECONDS, PENDING_KEEP, Store
from bot.store.codec import AuditRecord, Context, FoldJob, Summary, Usage, UsageTotals
from bot.store.errors import NotSubscribed
from bot.store.locks import FifoLocks, Turn
from bot.store.rights_memory import MemoryRights
from bot.store.votes import MemoryVotes
from bot.trimming import StoredMessage, fit_newest


class _Expiring:
    """A dict whose entries expire, pruned as it is used, never growing without bound."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._d: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self.max_items = max_items

    def get(self, key: Hashable) -> object | None:
        item = self._d.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._d[key]
            return None
        return item[1]

    def set(self, key: Hashable, value: object, ttl: float) -> None:
        self._d[key] = (time.monotonic() + ttl, value)
        self._d.move_to_end(key)
        while len(self._d) > self.max_items:
            self._d.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._d.pop(key, None)


class MemoryStore(MemoryRights, MemoryVotes, Store):
    """One process holds every lock, so a held turn needs no lease and no renewal."""

    def __init__(
        self,
        *,
        history_budget: int,
        history_ttl: int,
        lock_lease: float = 30.0,
        summaries: bool = False,
        retention=None,
    ):
        super().__init__(
            history_budget=history_budget,
            history_ttl=history_ttl,
            lock_lease=lock_lease,
            summaries=summaries,
            retention=retention,
        )
        self._hist = _Expiring()
        self._once = _Expiring()
        self._subscribed = _Expiring()
        self._cache = _Expiring()
        self._fifo = FifoLocks()
        self._holders: dict[str, str] = {}
        self._prompts: dict[str, str] = {}
        self._audit: dict[str, list[AuditRecord]] = {}
        self._usage: dict[str, dict[str, int]] = {}
        self._pending = _Expiring()
        self._summary = _Expiring()
        self._fold_lease = _Expiring()

    # -- turns

    async def acquire(
        self,
        conversation: str,
        once_id: str | None,
        max_wait: float = 300.0,
        *,
        subscribe: bool = False,
        only_if_subscribed: bool = False,
    ) -> Turn | None:
        started = time.monotonic()
        await self._fifo.acquire(conversation, max_wait)
        if only_if_subscribed and self._subscribed.get(conversation) is None:
            self._fifo.release(conversation)
            raise NotSubscribed(conversation)
        if once_id:
            key = (conversation, once_id)  # a tuple: no separator for an id to contain
            if self._once.get(key) is not None:
                self._fifo.release(conversation)
                return None
            self._once.set(key, True, ONCE_TTL_SECONDS)
        if subscribe:
            self._subscribed.set(conversation, True, self.history_ttl)
        turn = Turn(conversation, uuid.uuid4().hex, waited=time.monotonic() - started)
        self._holders[conversation] = turn.token
        return turn

    async def release(self, turn: Turn) -> None:
        if turn.released:
            return
        turn.released = True
        if self._holders.get(turn.conversation) != turn.token:
            return  # not the holder (as in Redis, releasing a lock one does not hold is a no-op)
        del self._holders[turn.conversation]
        self._fifo.release(turn.conversation)

    async def load(self, conversation, budget, prompt_scopes, meter=None, *, redactions=False):
        stored: list[StoredMessage] = self._hist.get(conversation) or []  # type: ignore[assignment]
        history = fit_newest(stored, budget)
        prompts = {s: self._prompts.get(s) for s in prompt_scopes}
        reading = self.meter_read(meter) if meter is not None else None
        placeholders = self.placeholders(conversation) if redactions else {}
        if not self.summaries:
            return Context(history, prompts, reading, placeholders)
        summary: Summary | None = self._summary.get(conversation)  # type: ignore[assignment]
        pending = len(self._pending.get(conversation) or ())  # type: ignore[arg-type]
        return Context(history, prompts, reading, placeholders, summary, len(stored), pending)

    async def commit(
        self,
        turn: Turn,
        messages: Sequence[StoredMessage],
        usage: Usage | None,
        record=None,
        *,
        fold: int = 0,
    ) -> int:
        conv = turn.conversation
        stored: list[StoredMessage] = list(self._hist.get(conv) or [])  # type: ignore[arg-type]
        fold = min(fold, len(stored)) if self.summaries else 0
        moved, stored = stored[:fold], stored[fold:]
        stored.extend(messages)
        kept = fit_newest(stored, self.history_budget)
        moved += stored[: len(stored) - len(kept)]
        if self.summaries and moved:
            pending = list(self._pending.get(conv) or ()) + moved  # type: ignore[call-overload]
            self._pending.set(conv, pending[-PENDING_KEEP:], self.history_ttl)
        self._hist.set(conv, kept, self.history_ttl)
        self._subscribed.set(conv, True, self.history_ttl)
        if messages:
            self.keep_record(conv, record)
        if usage is not None:
            self._count(usage)
        await self.release(turn)
        return fold + len(stored) - len(kept)

    async def clear(self, conversation: str) -> None:
        for d in (self._hist, self._pending, self._summary, self._fold_lease):
            d.pop(conversation)
        self._rights()["redactions"].pop(conversation, None)

    async def subscribe(self, conversation: str) -> None:
        self._subscribed.set(conversation, True, self.history_ttl)

    async def is_subscribed(self, conversation: str) -> bool:
        return self._subscribed.get(conversation) is not None

    async def history(self, conversation: str) -> list[StoredMessage]:
        return list(self._hist.get(conversation) or [])  # type: ignore[call-overload]

    # -- summaries

    async def summary(self, conversation: str) -> Summary | None:
        return self._summary.get(conversation)  # type: ignore[return-value]

    async def begin_fold(
        self, conversation: str, budget: int, lease_seconds: float
    ) -> FoldJob | None:
        pending: list[StoredMessage] = self._pending.get(conversation) or []  # type: ignore[assignment]
        if not pending or self._fold_lease.get(conversation) is not None:
            return None
        token = uuid.uuid4().hex
        self._fold_lease.set(conversation, token, lease_seconds)
        taken, total = [], 0
        for m in pending:
            if taken and total + m.tokens > budget:
                break
            taken.append(m)
            total += m.tokens
        summary: Summary | None = self._summary.get(conversation)  # type: ignore[assignment]
        return FoldJob(conversation, token, summary, taken)

    async def finish_fold(self, job: FoldJob, summary: Summary) -> bool:
        if self._fold_lease.get(job.conversation) != job.token:
            return False
        pending = list(self._pending.get(job.conversation) or ())  # type: ignore[call-overload]
        self._pending.set(job.conversation, pending[len(job.messages) :], self.history_ttl)
        self._summary.set(job.conversation, summary, self.history_ttl)
        self._fold_lease.pop(job.conversation)
        return True

    async def renew_fold(self, job: FoldJob, lease_seconds: float) -> bool:
        if self._fold_lease.get(job.conversation) != job.token:
            return False
        self._fold_lease.set(job.conversation, job.token, lease_seconds)
        return True

    async def abandon_fold(self, job: FoldJob) -> None:
        if self._fold_lease.get(job.conversation) == job.token:
            self._fold_lease.pop(job.conversation)

    # -- prompts

    async def get_prompts(self, scopes: Sequence[str]) -> dict[str, str | None]:
        return {s: self._prompts.get(s) for s in scopes}

    async def change_prompt(self, record: AuditRecord) -> str | None:
        old = self._prompts.get(record.scope)
        if record.new is None:
            self._prompts.pop(record.scope, None)
        else:
            self._prompts[record.scope] = record.new
        stored = AuditRecord(
            record.at, record.scope, record.who, record.who_name, record.action, old, record.new
        )
        audit = self._audit.setdefault(record.scope, [])
        audit.insert(0, stored)
        self._prune(audit)
        return old

    async def prompt_history(self, scope: str, limit: int = 10) -> list[AuditRecord]:
        return list(self._audit.get(scope, [])[:limit])

    # -- usage

    def _count(self, usage: Usage) -> None:
        if usage.day not in self._usage and len(self._usage) >= self.retention.usage_days:
            del self._usage[min(self._usage)]  # kept USAGE_RETENTION_DAYS, as in Redis
        day = self._usage.setdefault(usage.day, {})
        for f, v in usage.fields().items():
            day[f] = day.get(f, 0) + v

    async def usage(self, days: Sequence[str], dimension: str) -> dict[str, UsageTotals]:
        out = {}
        for d in days:
            day = self._usage.get(d, {})
            out[d] = UsageTotals(
                day.get(f"{dimension}|prompt", 0),
                day.get(f"{dimension}|completion", 0),
                day.get(f"{dimension}|replies", 0),
                day.get(f"{dimension}|estimated", 0),
            )
        return out

    async def add_usage(self, usage: Usage) -> None:
        self._count(usage)

    # -- cache

    async def cache_get(self, key: str) -> str | None:
        return self._cache.get(key)  # type: ignore[return-value]

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._cache.set(key, value, ttl_seconds)

    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        if self._cache.get(key) is not None:
            return False
        self._cache.set(key, value, ttl_seconds)
        return True

    # -- lifecycle

    async def ping(self) -> None:
        return None
