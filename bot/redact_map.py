"""Typed placeholders for what `bot.redact` finds, consistent within one conversation.

`[EMAIL_1]` stays `[EMAIL_1]` for the same address all through a conversation, so the model
can still refer to it. The mapping is kept per conversation in the store, beside the history
and with its TTL (`P{conv}:r`): its fields are a SHA-256 of the conversation key, the kind and
the normalised value, never the value itself. The raw value is not stored anywhere; a reader of
Redis who guesses a value (a phone number, say) and knows the conversation key could confirm
the guess, which is why the hash is salted per conversation rather than global. The mapping
is read in the load round trip and new entries are written in the commit round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass, field

from bot.redact import find_all

MAX_PLACEHOLDERS = 2000  # per conversation; beyond, new values still get (unkept) numbers
THREAD_ABOVE = 20_000  # characters: longer text is scanned in a worker thread
_PLACEHOLDER = re.compile(r"\[([A-Z_]+)_(\d+)\]")


def _normalise(kind: str, value: str) -> str:
    if kind in ("PHONE", "CARD", "IBAN", "NATIONAL_ID"):
        return "".join(c for c in value if c.isalnum()).upper()
    if kind in ("EMAIL", "IP"):
        return value.lower()
    return value


def value_hash(conversation: str, kind: str, value: str) -> str:
    raw = f"{conversation}\0{kind}\0{_normalise(kind, value)}".encode()
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass
class Redacted:
    text: str
    new: dict[str, str] = field(default_factory=dict)  # hash → placeholder, first used now
    counts: dict[str, int] = field(default_factory=dict)  # kind → findings


class Placeholders:
    """The placeholders of one conversation during one turn (known ones and new ones)."""

    def __init__(self, conversation: str, known: dict[str, str]) -> None:
        self.conversation = conversation
        self.known = dict(known)
        self.new: dict[str, str] = {}
        self._next: dict[str, int] = {}
        for ph in self.known.values():
            if m := _PLACEHOLDER.fullmatch(ph):
                self._next[m[1]] = max(self._next.get(m[1], 1), int(m[2]) + 1)

    def placeholder(self, kind: str, value: str) -> str:
        key = value_hash(self.conversation, kind, value)
        ph = self.known.get(key)
        if ph is None:
            n = self._next.get(kind, 1)
            self._next[kind] = n + 1
            ph = f"[{kind}_{n}]"
            if len(self.known) < MAX_PLACEHOLDERS:
                self.known[key] = ph
                self.new[key] = ph
        return ph

    def redact(self, text: str) -> Redacted:
        out: list[str] = []
        counts: dict[str, int] = {}
        pos = 0
        for f in find_all(text):
            out.append(text[pos : f.start])
            out.append(self.placeholder(f.kind, f.value))
            counts[f.kind] = counts.get(f.kind, 0) + 1
            pos = f.end
        out.append(text[pos:])
        return Redacted("".join(out), dict(self.new), counts)

    async def aredact(self, text: str) -> Redacted:
        if len(text) > THREAD_ABOVE:
            return await asyncio.to_thread(self.redact, text)
        return self.redact(text)
