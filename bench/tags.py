"""The tag (`[m123]`) a bench puts in each message: the fake model echoes it, so a reply, its
model call and its timings can be matched to the message that asked for it."""

from __future__ import annotations

import itertools
import re

TAG = re.compile(r"\[m(\d+)\]")
_seq = itertools.count(1)


def next_tag() -> str:
    return f"[m{next(_seq)}]"


def tag_of(text: str) -> str | None:
    m = TAG.search(text or "")
    return m.group(0) if m else None


def next_number() -> int:
    """The next number of the sequence tags take theirs from (for other ids that must not
    repeat within a run)."""
    return next(_seq)
