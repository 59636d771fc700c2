"""Data-subject requests: everything stored about one user, exported or erased, and erasing
one conversation (`threadwise data`, docs/spec.md §7).

Nothing here scans the keyspace. A user's conversations come from the per-user index every
commit writes (bounded, expiring with the history); prompt audits from the set of audited
scopes; usage from the day hashes within USAGE_RETENTION_DAYS.

Erasing a user removes their messages *and the assistant's replies to them* from every
conversation: a reply restates and answers what was asked, so keeping it would keep the
person's data, and removing the pair keeps the thread as the model sees it consistent (it
still starts with a user message and alternates). The other participants' turns stay, in
order. Usage rows and the user's own budget go; prompt and budget audit records keep the
change but name the person `erased`. What the platform (Slack, Teams) shows in the thread is
not the bot's store and is not touched.

Feedback and other future kinds of data plug in as a `DataSource` (`sources=`): each exports
JSON-able records and deletes by user. When a feedback store lands in `bot/store`, it adds
one source and nothing else changes.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.store import AuditRecord, Store

log = logging.getLogger("threadwise.data")

PLATFORMS = ("slack", "teams", "console")


class DataSource(Protocol):
    """Another kind of per-user data (feedback, …) that export and erasure must cover."""

    name: str

    async def export(self, user: str) -> list[dict]: ...

    async def delete(self, user: str) -> int: ...


@dataclass(frozen=True, slots=True)
class UserRef:
    platform: str
    workspace: str
    user_id: str

    @property
    def key(self) -> str:
        """As usage and stored messages name the user."""
        return f"{self.platform}:{self.workspace}:{self.user_id}"

    @property
    def principal(self) -> str:
        """As the audit names who acted (`slack:U1`)."""
        return f"{self.platform}:{self.user_id}"

    def in_workspace(self, scope: str) -> bool:
        here = f"{self.platform}:{self.workspace}"
        return scope == "global" or scope == here or scope.startswith(here + ":")


def parse_user(text: str) -> UserRef:
    """`<platform>:<workspace>:<user id>`; ValueError with what is wrong."""
    parts = text.strip().split(":", 2)
    if len(parts) != 3 or not all(parts) or parts[0] not in PLATFORMS:
        raise ValueError(
            f"{text!r} is not <platform>:<workspace>:<user id> (platform slack, teams or console)"
        )
    return UserRef(*parts)


def fingerprint(value: str) -> str:
    """How the data-request audit names a person: recomputable from the id, not readable."""
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _days(n: int) -> list[str]:
    now = time.time()
    return [time.strftime("%Y-%m-%d", time.gmtime(now - i * 86400)) for i in range(n + 1)]


class DataRights:
    def __init__(self, store: Store, sources: Sequence[DataSource] = ()) -> None:
        self.store = store
        self.sources = list(sources)

    async def _audit(self, actor: str, action: str, target: str, counts: dict) -> None:
        summary = " ".join(f"{k}={v}" for k, v in counts.items())
        scope = f"data:{fingerprint(target)}"
        await self.store.record_data_request(
            AuditRecord(time.time(), scope, actor, actor, action, None, summary)
        )
        log.warning(
            "data request",
            extra={"action": action, "by": actor, "target": fingerprint(target), "counts": summary},
        )

    async def export(self, user: UserRef, emit: Callable[[dict], None], actor: str) -> dict:
        """Every record about `user`, one dict per `emit`; returns counts per type."""
        counts = {"message": 0, "reply": 0, "prompt_change": 0, "budget_change": 0, "usage": 0}
        for conv in await self.store.user_conversations(user.key):
            for m in await self.store.history(conv):
                if m.user != user.key:
                    continue
                kind = "message" if m.role == "user" else "reply"
                counts[kind] += 1
                emit({"type": kind, "conversation": conv, "role": m.role, "content": m.content})
        for scope in await self.store.audited_scopes():
            if not user.in_workspace(scope):
                continue
            for r in await self.store.prompt_history(scope, self.store.retention.audit_keep):
                if r.who == user.principal:
                    counts["prompt_change"] += 1
                    emit(_audit_line("prompt_change", r))
        dim = f"u|{user.key}"
        for r in await self.store.budget_history(self.store.retention.audit_keep):
            if r.who == user.principal or r.scope == dim:
                counts["budget_change"] += 1
                emit(_audit_line("budget_change", r))
        budget = (await self.store.budgets([dim]))[dim]
        if budget is not None:
            emit({"type": "budget", "user": user.key, "daily_tokens": budget})
        per_day = await self.store.usage(_days(self.store.retention.usage_days), dim)
        for day, t in sorted(per_day.items()):
            if t.replies or t.prompt_tokens or t.completion_tokens:
                counts["usage"] += 1
                emit(
                    {
                        "type": "usage",
                        "day": day,
                        "prompt_tokens": t.prompt_tokens,
                        "completion_tokens": t.completion_tokens,
                        "replies": t.replies,
                    }
                )
        for source in self.sources:
            for rec in await source.export(user.key):
                counts[source.name] = counts.get(source.name, 0) + 1
                emit({"type": source.name, **rec})
        await self._audit(actor, "export-user", user.key, counts)
        return counts

    async def delete_user(self, user: UserRef, actor: str) -> dict:
        counts = {"conversations": 0, "messages": 0}
        for conv in await self.store.user_conversations(user.key):
            n = await self.store.erase_user_messages(conv, user.key)
            counts["messages"] += n
            counts["conversations"] += bool(n)
        await self.store.forget_user_index(user.key)
        dim = f"u|{user.key}"
        counts["usage_counters"] = await self.store.erase_usage(
            dim, _days(self.store.retention.usage_days)
        )
        if (await self.store.budgets([dim]))[dim] is not None:
            await self.store.change_budget(
                AuditRecord(time.time(), dim, actor, actor, "reset", None, None)
            )
        counts["audit_records_anonymised"] = await self.store.anonymise_audits(user.principal, dim)
        for source in self.sources:
            counts[source.name] = await source.delete(user.key)
        await self._audit(actor, "delete-user", user.key, counts)
        return counts

    async def delete_conversation(self, conversation: str, actor: str) -> bool:
        found = await self.store.delete_conversation(conversation)
        await self._audit(actor, "delete-conversation", conversation, {"found": int(found)})
        return found


FEEDBACK_SCAN = 100_000  # votes read from the feedback store's bounded log per request


class FeedbackSource:
    """Feedback votes as a `DataSource`, for a store with the feedback role.

    Votes are found in the feedback store's own log (a bounded, expiring sorted set of vote ids,
    `recent_votes`), never by scanning keys; each vote names its user as usage does. Erasure
    needs the store's `delete_votes(ids)`; `feedback_sources` offers this source only when the
    store has both.
    """

    name = "feedback"

    def __init__(self, store: object) -> None:
        self.store = store

    async def _mine(self, user: str) -> list:
        votes = await self.store.recent_votes(0, FEEDBACK_SCAN)  # type: ignore[attr-defined]
        return [v for v in votes if getattr(v, "user", None) == user]

    async def export(self, user: str) -> list[dict]:
        return [
            {
                "conversation": v.conversation,
                "value": v.value,
                "comment": v.comment,
                "at": v.at,
                "day": v.day,
            }
            for v in await self._mine(user)
        ]

    async def delete(self, user: str) -> int:
        ids = [v.id for v in await self._mine(user)]
        if ids:
            await self.store.delete_votes(ids)  # type: ignore[attr-defined]
        return len(ids)


def feedback_sources(store: object) -> list[DataSource]:
    """The feedback source when the store keeps feedback (and can delete it), else none."""
    if callable(getattr(store, "recent_votes", None)) and callable(
        getattr(store, "delete_votes", None)
    ):
        return [FeedbackSource(store)]
    return []


def _audit_line(kind: str, r: AuditRecord) -> dict:
    return {
        "type": kind,
        "at": r.at,
        "scope": r.scope,
        "action": r.action,
        "old": r.old,
        "new": r.new,
    }
