"""The store's roles for budgets set from the chat and for data requests (export, erasure).

Finding one person's data never scans the keyspace: every committed turn adds its
conversation to a per-user index (bounded, expiring with the history, written in the commit
round trip), audited prompt scopes are kept in a set, and usage lives in one hash per day.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from bot.store.codec import AuditRecord

# Conversations a user index keeps (the newest); older ones drop out of it, not out of Redis.
USER_INDEX_MAX = 2000
ERASED = "erased"  # `who` of an audit record whose person was erased
ERASED_NAME = "(erased)"
ERASED_SCOPE = "u|(erased)"  # scope of a budget record that was about an erased user
DATA_AUDIT_KEEP = 1000  # data requests recorded (newest)


@dataclass(frozen=True, slots=True)
class Retention:
    """How long usage counters and audit records are kept (history: HISTORY_TTL_SECONDS)."""

    usage_days: int = 35
    audit_days: int = 365  # 0: audit records are kept by count only
    audit_keep: int = 100  # newest records per audit list

    @property
    def usage_seconds(self) -> int:
        return self.usage_days * 24 * 3600

    @property
    def audit_seconds(self) -> int:
        return self.audit_days * 24 * 3600


class QuotaStore(ABC):
    """Daily token budgets set per dimension from the chat (settings are the defaults)."""

    @abstractmethod
    async def budgets(self, dimensions: Sequence[str]) -> dict[str, int | None]:
        """The budget set for each dimension, None where none is (the default applies)."""

    @abstractmethod
    async def change_budget(self, record: AuditRecord) -> str | None:
        """Set (`record.new`, an integer as text) or remove (None) the budget of
        `record.scope` (a dimension) and audit it atomically; returns the previous value."""

    @abstractmethod
    async def budget_history(self, limit: int = 10) -> list[AuditRecord]: ...


class DataStore(ABC):
    """What `threadwise data export | delete` needs, all found through indexes."""

    @abstractmethod
    async def user_conversations(self, user: str) -> list[str]:
        """Conversations `user` (`<platform>:<workspace>:<user id>`) has stored messages in."""

    @abstractmethod
    async def erase_user_messages(self, conversation: str, user: str) -> int:
        """Remove `user`'s messages (and the replies to them) from one conversation, keeping
        the history's invariants (starts with a user message, token total right); returns how
        many were removed."""

    @abstractmethod
    async def forget_user_index(self, user: str) -> None: ...

    @abstractmethod
    async def delete_conversation(self, conversation: str) -> bool:
        """History, running total, subscription and redaction placeholders; True if any."""

    @abstractmethod
    async def audited_scopes(self) -> list[str]: ...

    @abstractmethod
    async def anonymise_audits(self, who: str, about: str = "") -> int:
        """Rewrite every prompt and budget audit record by `who` (a principal) to ERASED, and
        the scope of those about `about` (a budget dimension) to ERASED_SCOPE; returns how
        many records changed. The change itself stays recorded."""

    @abstractmethod
    async def record_data_request(self, record: AuditRecord) -> None:
        """Audit an export or erasure: who ran it, when, what (the person only as a hash)."""

    @abstractmethod
    async def data_requests(self, limit: int = 10) -> list[AuditRecord]: ...

    @abstractmethod
    async def erase_usage(self, dimension: str, days: Sequence[str]) -> int:
        """Delete one dimension's counters (e.g. `u|slack:T1:U1`) on those days."""
