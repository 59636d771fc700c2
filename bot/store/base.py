"""The store's interface, by role: turns and history, prompts, usage, the adapters' cache.

Each role is a small ABC, so a caller that needs one role can say so in its type hints;
`Store` is all of them plus the lifecycle, and is what both implementations are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from bot.store.codec import AuditRecord, Context, FoldJob, Summary, TurnRecord, Usage, UsageTotals
from bot.store.locks import Turn
from bot.store.meters import MeterRequest
from bot.store.rights_base import DataStore, QuotaStore, Retention
from bot.store.votes import FeedbackStore
from bot.trimming import StoredMessage

ONCE_TTL_SECONDS = 24 * 3600
USAGE_TTL_SECONDS = 35 * 24 * 3600
AUDIT_KEEP = 100
# Messages waiting to be folded into a summary (HISTORY_SUMMARY): they pile up only while
# summarising keeps failing and answering does not, and past this the oldest are let go.
PENDING_KEEP = 1000


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
    async def load(
        self,
        conversation: str,
        budget: int,
        prompt_scopes: Sequence[str],
        meter: MeterRequest | None = None,
        *,
        redactions: bool = False,
    ) -> Context:
        """The newest history within `budget` tokens and the prompt of each scope.

        With `meter`, also today's usage against the budgets and a slot of the user's rate
        limit (taken only when admitted); with `redactions`, the conversation's placeholders.
        """

    @abstractmethod
    async def commit(
        self,
        turn: Turn,
        messages: Sequence[StoredMessage],
        usage: Usage | None,
        record: TurnRecord | None = None,
        *,
        fold: int = 0,
    ) -> int:
        """Append a turn, trim to `history_budget` atomically, record usage, release the lock.

        A committed turn also keeps the conversation subscribed for another `history_ttl`.
        `record` indexes the conversation under its user and keeps new redaction
        placeholders, both expiring with the history. With `summaries` on, the `fold` oldest
        messages (those this turn's prompt left out) and whatever trimming drops move to the
        pending list in the same step, so no message is ever dropped without being
        summarised. Returns how many left the history.
        """

    @abstractmethod
    async def clear(self, conversation: str) -> None:
        """Forget a conversation's history and summary (`!reset`); the bot stays subscribed."""

    @abstractmethod
    async def subscribe(self, conversation: str) -> None:
        """The bot answers this thread from now on, mentioned or not (for `history_ttl`)."""

    @abstractmethod
    async def is_subscribed(self, conversation: str) -> bool: ...

    @abstractmethod
    async def history(self, conversation: str) -> list[StoredMessage]:
        """Everything stored (operators and tests; turns use `load`)."""


class SummaryStore(ABC):
    """The running summary of what trimming moved out of a history (HISTORY_SUMMARY).

    Folding is leased: one replica at a time folds a conversation's pending messages, and its
    result is written only if it still holds the lease (a `!reset` or an expired lease
    discards it), taking exactly the messages it read off the pending list.
    """

    @abstractmethod
    async def summary(self, conversation: str) -> Summary | None: ...

    @abstractmethod
    async def begin_fold(
        self, conversation: str, budget: int, lease_seconds: float
    ) -> FoldJob | None:
        """Lease the summary and read the oldest pending messages within `budget` tokens (at
        least one); None when nothing is pending or another replica holds the lease."""

    @abstractmethod
    async def finish_fold(self, job: FoldJob, summary: Summary) -> bool:
        """Store `summary`, drop the job's messages from the pending list, end the lease.

        False (nothing written) when the lease was lost: reset, or expired and taken over.
        """

    @abstractmethod
    async def renew_fold(self, job: FoldJob, lease_seconds: float) -> bool:
        """Extend the lease while the model works; False when it was already lost."""

    @abstractmethod
    async def abandon_fold(self, job: FoldJob) -> None:
        """End the lease without writing; the messages stay pending for a later fold."""


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

    @abstractmethod
    async def add_usage(self, usage: Usage) -> None:
        """Count a model call made outside a turn's commit (a summary)."""


class CacheStore(ABC):
    """A small cache for adapters (user names, once-per-conversation notices)."""

    @abstractmethod
    async def cache_get(self, key: str) -> str | None: ...

    @abstractmethod
    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    @abstractmethod
    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Set only if absent; True when this call set it (once-per-conversation notices)."""


class Store(
    TurnStore,
    SummaryStore,
    PromptStore,
    UsageStore,
    CacheStore,
    FeedbackStore,
    QuotaStore,
    DataStore,
):
    """The one interface for state. `history_budget` is the most history worth keeping;
    `summaries` (HISTORY_SUMMARY) keeps what trimming drops pending for the summary."""

    def __init__(
        self,
        *,
        history_budget: int,
        history_ttl: int,
        lock_lease: float = 30.0,
        summaries: bool = False,
        retention: Retention | None = None,
    ):
        self.history_budget = history_budget
        self.history_ttl = history_ttl
        self.lock_lease = lock_lease
        self.summaries = summaries
        self.retention = retention or Retention()

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
