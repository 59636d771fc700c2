"""`MemoryStore`'s budgets, metering and data-request parts: the same contract as Redis's
(tests/contract), in one process."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.store.codec import AuditRecord, TurnRecord
from bot.store.meters import RATE_TTL_SECONDS, MeterReading, MeterRequest, check
from bot.store.rights_base import (
    DATA_AUDIT_KEEP,
    ERASED,
    ERASED_NAME,
    ERASED_SCOPE,
    USER_INDEX_MAX,
)


class MemoryRights:
    """Mixin for `MemoryStore`: uses its `_hist`, `_usage`, `_audit`, `_subscribed`,
    `history_ttl` and `retention`; keeps its own state in `_rights_state`."""

    def _rights(self) -> dict:
        state = self.__dict__.get("_rights_state")
        if state is None:
            state = self.__dict__["_rights_state"] = {
                "budgets": {},  # dimension → tokens
                "budget_audit": [],  # newest first
                "rate": {},  # (user, minute) → count
                "index": {},  # user → {conversation: last use}
                "redactions": {},  # conversation → {hash: placeholder}
            }
        return state

    def meter_read(self, req: MeterRequest) -> MeterReading:
        st = self._rights()
        day = self._usage.get(req.day, {})
        used = {
            d: day.get(f"{d}|prompt", 0) + day.get(f"{d}|completion", 0) for d, _ in req.dimensions
        }
        overrides = {d: st["budgets"].get(d) for d, _ in req.dimensions}
        rate = st["rate"]
        for key in [k for k in rate if k[1] < req.minute - RATE_TTL_SECONDS // 60]:
            del rate[key]  # expired minutes
        key = (req.rate_user, req.minute)
        reading, take = check(req, used, overrides, rate.get(key, 0))
        if take:
            rate[key] = rate.get(key, 0) + 1
        return reading

    def placeholders(self, conversation: str) -> dict[str, str]:
        return dict(self._rights()["redactions"].get(conversation, {}))

    def keep_record(self, conversation: str, record: TurnRecord | None) -> None:
        if record is None:
            return
        st = self._rights()
        if record.user:
            idx = st["index"].setdefault(record.user, {})
            idx.pop(conversation, None)
            idx[conversation] = time.time()
            while len(idx) > USER_INDEX_MAX:
                del idx[next(iter(idx))]
        if record.redactions:
            st["redactions"].setdefault(conversation, {}).update(record.redactions)

    async def budgets(self, dimensions: Sequence[str]) -> dict[str, int | None]:
        st = self._rights()
        return {d: st["budgets"].get(d) for d in dimensions}

    async def change_budget(self, record: AuditRecord) -> str | None:
        st = self._rights()
        old = st["budgets"].get(record.scope)
        if record.new is None:
            st["budgets"].pop(record.scope, None)
        else:
            st["budgets"][record.scope] = int(record.new)
        old_text = None if old is None else str(old)
        audit = st["budget_audit"]
        audit.insert(
            0,
            AuditRecord(
                record.at,
                record.scope,
                record.who,
                record.who_name,
                record.action,
                old_text,
                record.new,
            ),
        )
        self._prune(audit)
        return old_text

    def _prune(self, audit: list[AuditRecord]) -> None:
        ret = self.retention
        del audit[ret.audit_keep :]
        if ret.audit_days:
            oldest = time.time() - ret.audit_seconds
            while audit and audit[-1].at < oldest:
                audit.pop()

    async def budget_history(self, limit: int = 10) -> list[AuditRecord]:
        return list(self._rights()["budget_audit"][:limit])

    async def user_conversations(self, user: str) -> list[str]:
        idx = self._rights()["index"].get(user, {})
        oldest = time.time() - self.history_ttl
        return [c for c, at in idx.items() if at >= oldest]

    async def erase_user_messages(self, conversation: str, user: str) -> int:
        stored = list(self._hist.get(conversation) or [])
        keep = []
        for m in stored:
            if m.user == user or (not keep and m.role != "user"):
                continue
            keep.append(m)
        removed = len(stored) - len(keep)
        if removed:
            if keep:
                self._hist.set(conversation, keep, self.history_ttl)
            else:
                self._hist.pop(conversation)
        return removed

    async def forget_user_index(self, user: str) -> None:
        self._rights()["index"].pop(user, None)

    async def delete_conversation(self, conversation: str) -> bool:
        found = bool(self._hist.get(conversation)) or self._subscribed.get(conversation)
        self._hist.pop(conversation)
        self._subscribed.pop(conversation)
        self._rights()["redactions"].pop(conversation, None)
        return bool(found)

    async def audited_scopes(self) -> list[str]:
        return sorted(self._audit)

    async def anonymise_audits(self, who: str, about: str = "") -> int:
        changed = 0
        for audit in [*self._audit.values(), self._rights()["budget_audit"]]:
            for i, r in enumerate(audit):
                by, on = r.who == who, bool(about) and r.scope == about
                if by or on:
                    audit[i] = AuditRecord(
                        r.at,
                        ERASED_SCOPE if on else r.scope,
                        ERASED if by else r.who,
                        ERASED_NAME if by else r.who_name,
                        r.action,
                        r.old,
                        r.new,
                    )
                    changed += 1
        return changed

    async def record_data_request(self, record: AuditRecord) -> None:
        audit = self._rights().setdefault("data_audit", [])
        audit.insert(0, record)
        del audit[DATA_AUDIT_KEEP:]

    async def data_requests(self, limit: int = 10) -> list[AuditRecord]:
        return list(self._rights().get("data_audit", [])[:limit])

    async def erase_usage(self, dimension: str, days: Sequence[str]) -> int:
        n = 0
        for d in days:
            day = self._usage.get(d, {})
            for c in ("prompt", "completion", "replies"):
                if day.pop(f"{dimension}|{c}", None) is not None:
                    n += 1
        return n
