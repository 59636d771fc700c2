"""What the store keeps, and how a message is written into one Redis list item.

A stored message is `tokens\\trole\\tname\\tcontent`: the token count comes first so the Lua
scripts can trim and fit by a prefix match without decoding anything, and the content is last
so it may hold tabs and newlines. The name field may carry the turn's user after a `\\x1e`
(`name\\x1euser`), so a user's messages can be erased; items written before that have no
`\\x1e` and decode with `user` None.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from bot.store.meters import MeterReading
from bot.trimming import StoredMessage

USER_MARK = "\x1e"
_FIELD_UNSAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " ", USER_MARK: " "})


def encode_message(msg: StoredMessage) -> str:
    name = msg.name or ""
    if msg.user:
        name += USER_MARK + msg.user.translate(_FIELD_UNSAFE)
    return f"{msg.tokens}\t{msg.role}\t{name}\t{msg.content}"


def decode_message(raw: str | bytes) -> StoredMessage:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    tokens, role, name, content = raw.split("\t", 3)
    name, _, user = name.partition(USER_MARK)
    return StoredMessage(
        role=role, content=content, tokens=int(tokens), name=name or None, user=user or None
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """One reply's usage, attributed to its workspace, channel and user (docs/spec.md §4)."""

    workspace: str  # "slack:T1"
    channel: str  # "slack:T1:C1"
    user: str  # "slack:T1:U1"
    prompt_tokens: int
    completion_tokens: int
    day: str = field(default_factory=lambda: time.strftime("%Y-%m-%d", time.gmtime()))

    def fields(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for dim in (f"w|{self.workspace}", f"c|{self.channel}", f"u|{self.user}"):
            out[f"{dim}|prompt"] = self.prompt_tokens
            out[f"{dim}|completion"] = self.completion_tokens
            out[f"{dim}|replies"] = 1
        return out


@dataclass(frozen=True, slots=True)
class UsageTotals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.replies + other.replies,
        )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: float
    scope: str
    who: str
    who_name: str
    action: str  # "set" | "reset"
    old: str | None
    new: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "scope": self.scope,
                "who": self.who,
                "who_name": self.who_name,
                "action": self.action,
                "old": self.old,
                "new": self.new,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditRecord:
        d = json.loads(raw)
        return cls(d["at"], d["scope"], d["who"], d["who_name"], d["action"], d["old"], d["new"])


@dataclass(frozen=True, slots=True)
class TurnRecord:
    """What a commit keeps beside the messages: the user whose conversation index it joins,
    and the redaction placeholders first used in this turn (hash of value → placeholder)."""

    user: str | None = None
    redactions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Context:
    """What a turn needs from the store: fitted history and the prompts of each scope, and,
    when asked for, the budget and rate reading and the conversation's redaction placeholders
    (read in the same round trip)."""

    history: list[StoredMessage]
    prompts: dict[str, str | None]
    meter: MeterReading | None = None
    redactions: dict[str, str] = field(default_factory=dict)
