"""What the store keeps, and how a message is written into one Redis list item.

A stored message is `tokens\\trole\\tname\\tcontent`: the token count comes first so the Lua
scripts can trim and fit by a prefix match without decoding anything, and the content is last
so it may hold tabs and newlines. The name field may carry the turn's user after a `\\x1e`
(`name\\x1euser`), so a user's messages can be erased; items written before that have no
`\\x1e` and decode with `user` None. A message with attachments marks its name field with a
trailing `*` (never part of a speaker name, which is `[A-Za-z0-9_-]`, nor of a stored user id)
and its content is then JSON `{"text": …, "parts": […]}`: the prefix the scripts match is
unchanged.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from bot.store.meters import MeterReading
from bot.trimming import StoredMessage

_PARTS = "*"
USER_MARK = "\x1e"
_FIELD_UNSAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " ", USER_MARK: " ", _PARTS: " "})


def encode_message(msg: StoredMessage) -> str:
    name = msg.name or ""
    if msg.user:
        name += USER_MARK + msg.user.translate(_FIELD_UNSAFE)
    if msg.parts:
        body = json.dumps({"text": msg.content, "parts": list(msg.parts)}, ensure_ascii=False)
        return f"{msg.tokens}\t{msg.role}\t{name}{_PARTS}\t{body}"
    return f"{msg.tokens}\t{msg.role}\t{name}\t{msg.content}"


def decode_message(raw: str | bytes) -> StoredMessage:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    tokens, role, name, content = raw.split("\t", 3)
    parts: tuple = ()
    if name.endswith(_PARTS):
        body = json.loads(content)
        name, content, parts = name[: -len(_PARTS)], body["text"], tuple(body["parts"])
    name, _, user = name.partition(USER_MARK)
    return StoredMessage(
        role=role,
        content=content,
        tokens=int(tokens),
        name=name or None,
        parts=parts,
        user=user or None,
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
    # 0 for model calls that are not replies (summaries): their tokens count, not as a reply.
    replies: int = 1
    # The server reported no usage: the counts are Threadwise's own (tiktoken).
    estimated: bool = False

    def fields(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for dim in (f"w|{self.workspace}", f"c|{self.channel}", f"u|{self.user}"):
            out[f"{dim}|prompt"] = self.prompt_tokens
            out[f"{dim}|completion"] = self.completion_tokens
            if self.replies:
                out[f"{dim}|replies"] = self.replies
            if self.estimated:
                out[f"{dim}|estimated"] = self.replies or 1
        return out


@dataclass(frozen=True, slots=True)
class UsageTotals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0
    estimated: int = 0  # replies whose counts are Threadwise's own, not the server's

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.replies + other.replies,
            self.estimated + other.estimated,
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
class Summary:
    """A conversation's running summary (HISTORY_SUMMARY) of the history trimming moved out.

    `tokens` is what the labelled context message costs in a prompt (`bot/summary.py` counts
    it once, when it writes the summary), so a turn budgets it without tokenizing; `covered`
    is how many messages it has folded in so far.
    """

    text: str
    tokens: int
    covered: int = 0
    at: float = 0.0

    def encode(self) -> str:
        return f"{self.tokens}\t{self.covered}\t{self.at}\t{self.text}"

    @classmethod
    def decode(cls, raw: str | bytes | None) -> Summary | None:
        if not raw:
            return None
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        tokens, covered, at, text = raw.split("\t", 3)
        return cls(text, int(tokens), int(covered), float(at))


@dataclass(frozen=True, slots=True)
class FoldJob:
    """Pending messages one replica folds into the summary, under the summary's lease."""

    conversation: str
    token: str
    summary: Summary | None
    messages: list[StoredMessage]


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
    (read in the same round trip).

    With summaries on (`Store.summaries`), also the running summary, how many messages the
    history holds (`stored`: those the turn leaves out are handed to the summary in its
    commit) and how many wait to be folded (`pending`).
    """

    history: list[StoredMessage]
    prompts: dict[str, str | None]
    meter: MeterReading | None = None
    redactions: dict[str, str] = field(default_factory=dict)
    summary: Summary | None = None
    stored: int = 0
    pending: int = 0
