"""All state behind one interface: history, locks, exactly-once markers, prompts, usage, cache.

Two implementations share one contract (and one contract test suite): `RedisStore` for real
deployments (every replica shares it) and `MemoryStore` for `threadwise chat` with no Redis.
The interface is split by role in `base`; the Redis key layout is documented in `keys`.

A turn costs three round trips when nobody else holds the conversation: `acquire` (dedupe +
subscription + lock in one script), `load` (fitted history + scoped prompts, one pipeline),
`commit` (append + trim + usage + release, one pipeline).
"""

from __future__ import annotations

from bot.store.base import CacheStore, PromptStore, Store, SummaryStore, TurnStore, UsageStore
from bot.store.codec import (
    AuditRecord,
    Context,
    FoldJob,
    Summary,
    TurnRecord,
    Usage,
    UsageTotals,
    decode_message,
    encode_message,
)
from bot.store.errors import NotSubscribed, StoreUnavailable
from bot.store.locks import Turn
from bot.store.memory import MemoryStore
from bot.store.meters import MeterReading, MeterRequest
from bot.store.redis import RedisStore
from bot.store.rights_base import Retention

__all__ = [
    "AuditRecord",
    "CacheStore",
    "Context",
    "FoldJob",
    "MemoryStore",
    "MeterReading",
    "MeterRequest",
    "NotSubscribed",
    "PromptStore",
    "RedisStore",
    "Retention",
    "Store",
    "StoreUnavailable",
    "Summary",
    "SummaryStore",
    "Turn",
    "TurnRecord",
    "TurnStore",
    "Usage",
    "UsageStore",
    "UsageTotals",
    "decode_message",
    "encode_message",
    "make_store",
]


def make_store(settings) -> Store:
    """Redis when `REDIS_URL` is set, else the in-process store."""
    common = {
        "history_budget": settings.history_budget,
        "history_ttl": settings.history_ttl_seconds,
        "summaries": settings.history_summary,
        "retention": Retention(settings.usage_retention_days, settings.audit_retention_days),
    }
    if settings.redis_url is not None:
        from bot.store.connect import store_options

        return RedisStore(
            settings.redis_url.get_secret_value(),
            prefix=settings.redis_key_prefix,
            **store_options(settings),
            **common,
        )
    return MemoryStore(**common)
