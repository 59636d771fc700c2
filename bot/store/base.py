"""The store's interface, by role: turns and history, prompts, usage, the adapters' cache.

Each role is a small ABC, so a caller that needs one role can say so in its type hints;
`Store` is all of them plus the lifecycle, and is what both implementations are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from bot.store.codec import AuditRecord, Context, Usage, UsageTotals
from bot.store.locks import Turn
from bot.trimming import StoredMessage

ONCE_TTL_SECONDS = 24 * 3600
USAGE_TTL_SECONDS = 35 * 24 * 3600
AUDIT_KEEP = 100


class TurnStore(ABC):
    """Turns (claim, lock, load, commit) and the history and subscription they keep."""

    @abstractmethod
    async def acquire(
        self,
        conversation: str,
        once_id: str | None,
        max_wait: float = 300.0,
        *,
        subscribe: bool = False,
        only_if_subscribed: bool = False,
    ) -> Turn | None:
        """Claim a post exactly once and take the conversation's lock, waiting in FIFO order.

        `subscribe` makes the conversation one the bot answers (a mention), in the same step,
        so later replies in the thread are taken up even while this first answer is running.
        `only_if_subscribed` (a thread reply without a mention) raises `NotSubscribed` unless
        the bot answers this thread; the check is made in arrival order, after earlier messages
        of the conversation in this process, so a reply never overtakes the mention before it.
        Returns None when `once_id` was seen before (a duplicate delivery or a retry).
        """

    @abstractmethod
    async def release(self, turn: Turn) -> None:
        """Give the lock up (idempotent)."""

    @abstractmethod
    async def load(self, conversation: str, budget: int, prompt_scopes: Sequence[str]) -> Context:
        """The newest history within `budget` tokens and the prompt of each scope."""

    @abstractmethod
    async def commit(
        self, turn: Turn, messages: Sequence[StoredMessage], usage: Usage | None
    ) -> int:
        """Append a turn, trim to `history_budget` atomically, record usage, release the lock.

        A committed turn also keeps the conversation subscribed for another `history_ttl`.
        Returns how many old messages trimming dropped.
        """

    @abstractmethod
    async def clear(self, conversation: str) -> None:
        """Forget a conversation's history (`!reset`); the bot stays subscribed to it."""

    @abstractmethod
    async def subscribe(self, conversation: str) -> None:
        """The bot answers this thread from now on, mentioned or not (for `history_ttl`)."""

    @abstractmethod
    async def is_subscribed(self, conversation: str) -> bool: ...

    @abstractmethod
    async def history(self, conversation: str) -> list[StoredMessage]:
        """Everything stored (operators and tests; turns use `load`)."""


class PromptStore(ABC):
    @abstractmethod
    async def get_prompts(self, scopes: Sequence[str]) -> dict[str, str | None]: ...

    @abstractmethod
    async def change_prompt(self, record: AuditRecord) -> str | None:
        """Set (`record.new`) or remove (None) a scope's prompt and audit it atomically.

        Returns the previous text; the stored audit record carries it as `old`.
        """

    @abstractmethod
    async def prompt_history(self, scope: str, limit: int = 10) -> list[AuditRecord]: ...


class UsageStore(ABC):
    @abstractmethod
    async def usage(self, days: Sequence[str], dimension: str) -> dict[str, UsageTotals]:
        """Totals per day for one dimension, e.g. `c|slack:T1:C1` or `w|slack:T1`."""


class CacheStore(ABC):
    """A small cache for adapters (user names, once-per-conversation notices)."""

    @abstractmethod
    async def cache_get(self, key: str) -> str | None: ...

    @abstractmethod
    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    @abstractmethod
    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Set only if absent; True when this call set it (once-per-conversation notices)."""


class Store(TurnStore, PromptStore, UsageStore, CacheStore):
    """The one interface for state. `history_budget` is the most history worth keeping."""

    def __init__(self, *, history_budget: int, history_ttl: int, lock_lease: float = 30.0):
        self.history_budget = history_budget
        self.history_ttl = history_ttl
        self.lock_lease = lock_lease

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store does not answer."""

    async def eviction_policy(self) -> str | None:
        """Redis's `maxmemory-policy`; "" for a store that has none, None when Redis won't say.

        Only `noeviction` keeps exactly-once markers and locks until their TTL: they are the
        keys with a TTL, which is precisely what the `volatile-*` policies evict first.
        """
        return ""

    async def warm(self) -> None:
        """Open connections up front (start-up), where the store has any."""
        return None

    async def close(self) -> None:
        return None
