"""Feedback votes in the store: the record, the role's interface and its in-process form.

A vote is one person's 👍/👎 (and perhaps a comment) on one model answer. One per person per
answer: a second click replaces the first, and the day counters move with it. Votes are kept
`VOTE_TTL_SECONDS` (like usage) and at most `VOTE_LOG_MAX` of them, newest first.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

VOTE_TTL_SECONDS = 35 * 24 * 3600
VOTE_LOG_MAX = 100_000
COMMENT_MAX_CHARS = 2_000
VALUES = ("up", "down")


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


@dataclass(frozen=True, slots=True)
class Vote:
    """One person's vote on one answer; `answer` is the platform's id of the answer message."""

    platform: str
    workspace_scope: str  # "slack:T1"
    channel_scope: str  # "slack:T1:C1"
    conversation: str  # the conversation key of the answer's thread
    answer: str
    user: str  # "slack:T1:U1", as usage names users
    value: str  # "up" | "down"
    comment: str = ""
    deployment: str = ""
    prompt_scope: str = ""
    at: float = field(default_factory=time.time)
    day: str = field(default_factory=_today)

    @property
    def id(self) -> str:
        """What makes a vote one: the answer and who voted (a tuple-like join, `\\n`-free ids)."""
        return f"{self.conversation}\n{self.answer}\n{self.user}"

    def counter_fields(self) -> list[str]:
        return [f"c|{self.channel_scope}|{self.value}", f"w|{self.workspace_scope}|{self.value}"]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Vote:
        d = json.loads(raw)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(frozen=True, slots=True)
class VoteCounts:
    up: int = 0
    down: int = 0

    def __add__(self, other: VoteCounts) -> VoteCounts:
        return VoteCounts(self.up + other.up, self.down + other.down)


class FeedbackStore(ABC):
    @abstractmethod
    async def record_vote(self, vote: Vote) -> Vote | None:
        """Store `vote` (replacing this person's earlier vote on the answer); returns that one."""

    @abstractmethod
    async def vote_counts(self, days: Sequence[str], dimension: str) -> dict[str, VoteCounts]:
        """Votes per day (the day of each vote's latest click) for `c|<scope>` or `w|<scope>`."""

    @abstractmethod
    async def recent_votes(self, since: float, limit: int) -> list[Vote]:
        """Votes clicked at or after `since`, newest first, at most `limit`."""

    @abstractmethod
    async def delete_votes(self, ids: Sequence[str]) -> int:
        """Erase votes by id (a data request), their day counts with them; how many were."""


class MemoryVotes(FeedbackStore):
    """The in-process form, bounded like the Redis one."""

    def _votes_state(self) -> tuple[dict[str, Vote], dict[str, dict[str, int]]]:
        if not hasattr(self, "_votes"):
            self._votes: dict[str, Vote] = {}  # insertion order: oldest click first
            self._vote_days: dict[str, dict[str, int]] = {}
        return self._votes, self._vote_days

    async def record_vote(self, vote: Vote) -> Vote | None:
        votes, days = self._votes_state()
        old = votes.pop(vote.id, None)
        if old is not None:
            day = days.get(old.day, {})
            for f in old.counter_fields():
                day[f] = day.get(f, 0) - 1
        votes[vote.id] = vote
        day = days.setdefault(vote.day, {})
        for f in vote.counter_fields():
            day[f] = day.get(f, 0) + 1
        cutoff = time.time() - VOTE_TTL_SECONDS
        while votes and (len(votes) > VOTE_LOG_MAX or next(iter(votes.values())).at < cutoff):
            votes.pop(next(iter(votes)))
        while len(days) > 35:
            del days[min(days)]
        return old

    async def vote_counts(self, days: Sequence[str], dimension: str) -> dict[str, VoteCounts]:
        _, per_day = self._votes_state()
        out = {}
        for d in days:
            day = per_day.get(d, {})
            out[d] = VoteCounts(day.get(f"{dimension}|up", 0), day.get(f"{dimension}|down", 0))
        return out

    async def recent_votes(self, since: float, limit: int) -> list[Vote]:
        votes, _ = self._votes_state()
        out = []
        for v in reversed(votes.values()):
            if v.at < since or len(out) >= limit:
                break
            out.append(v)
        return out

    async def delete_votes(self, ids: Sequence[str]) -> int:
        votes, days = self._votes_state()
        gone = 0
        for vote_id in ids:
            old = votes.pop(vote_id, None)
            if old is None:
                continue
            gone += 1
            day = days.get(old.day, {})
            for f in old.counter_fields():
                day[f] = day.get(f, 0) - 1
        return gone
