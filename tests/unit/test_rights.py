"""Data requests in process (MemoryStore): export and erasure of one user, the feedback hook."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bot.rights import DataRights, FeedbackSource, feedback_sources, fingerprint, parse_user
from bot.store import AuditRecord, MemoryStore, TurnRecord, Usage
from bot.trimming import StoredMessage


@dataclass
class FakeVote:
    id: str
    user: str
    conversation: str
    value: str
    comment: str = ""
    at: float = field(default_factory=time.time)
    day: str = "2026-12-02"


class StoreWithFeedback(MemoryStore):
    """The feedback role as the feedback store offers it: a bounded log, delete by id."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.votes: dict[str, FakeVote] = {}

    async def recent_votes(self, since: float, limit: int) -> list[FakeVote]:
        return [v for v in self.votes.values() if v.at >= since][:limit]

    async def delete_votes(self, ids: list[str]) -> None:
        for i in ids:
            self.votes.pop(i, None)


async def turn(store, user: str, n: int) -> None:
    t = await store.acquire("slack:T:C:1", f"m{n}")
    day = time.strftime("%Y-%m-%d", time.gmtime())
    said = [
        StoredMessage("user", f"q{n}", 5, None, user=user),
        StoredMessage("assistant", f"a{n}", 5, None, user=user),
    ]
    await store.commit(t, said, Usage("slack:T", "slack:T:C", user, 3, 2, day), TurnRecord(user))


async def test_export_and_erasure_cover_messages_usage_audit_and_feedback():
    store = StoreWithFeedback(history_budget=1000, history_ttl=3600)
    store.votes = {
        "v1": FakeVote("v1", "slack:T:U1", "slack:T:C:1", "up", "great"),
        "v2": FakeVote("v2", "slack:T:U2", "slack:T:C:1", "down"),
    }
    await turn(store, "slack:T:U1", 0)
    await turn(store, "slack:T:U2", 1)
    await store.change_prompt(
        AuditRecord(time.time(), "slack:T:C", "slack:U1", "Ann", "set", None, "Hi")
    )
    rights = DataRights(store, feedback_sources(store))
    user = parse_user("slack:T:U1")
    lines: list[dict] = []
    counts = await rights.export(user, lines.append, "cli:ops")
    kinds = [x["type"] for x in lines]
    assert kinds.count("message") == 1 and kinds.count("reply") == 1
    assert {"prompt_change", "usage", "feedback"} <= set(kinds)
    assert [x["comment"] for x in lines if x["type"] == "feedback"] == ["great"]
    assert counts["feedback"] == 1

    done = await rights.delete_user(user, "cli:ops")
    assert done["messages"] == 2 and done["feedback"] == 1 and done["audit_records_anonymised"] == 1
    assert [m.content for m in await store.history("slack:T:C:1")] == ["q1", "a1"]
    assert list(store.votes) == ["v2"]
    assert (await store.prompt_history("slack:T:C"))[0].who == "erased"
    requests = await store.data_requests()
    assert [r.action for r in requests] == ["delete-user", "export-user"]
    assert all(r.scope == f"data:{fingerprint('slack:T:U1')}" for r in requests)
    assert "U1" not in repr(requests)


def test_stores_that_keep_feedback_offer_it_to_data_requests_and_others_do_not():
    assert feedback_sources(object()) == []
    assert isinstance(
        feedback_sources(MemoryStore(history_budget=10, history_ttl=10))[0], FeedbackSource
    )
    assert isinstance(
        feedback_sources(StoreWithFeedback(history_budget=10, history_ttl=10))[0], FeedbackSource
    )


def test_user_references_must_name_platform_workspace_and_user():
    assert parse_user("teams:tenant-1:aad-9").principal == "teams:aad-9"
    for bad in ("U1", "slack:T1", "mail:T1:U1", "slack::U1"):
        try:
            parse_user(bad)
        except ValueError:
            continue
        raise AssertionError(bad)
