"""Fitting a conversation into the token limit (SPEC.md §3).

Every stored message carries its own token count, so fitting is arithmetic on integers: the
prompt is built newest-first until the next older message would break the limit. The Redis
store runs the same rule server-side (`bot/store/lua/load.lua`); this is the reference the
property tests check, and the in-process store's implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.tokens import REPLY_PRIMING


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One history message as stored: the model-facing fields plus its cookbook token count."""

    role: str
    content: str
    tokens: int
    name: str | None = None

    def to_openai(self) -> dict[str, str]:
        msg = {"role": self.role, "content": self.content}
        if self.name:
            msg["name"] = self.name
        return msg


def history_budget(
    token_limit: int, max_response_tokens: int, system_tokens: int, new_tokens: int
) -> int:
    """Tokens left for history once the system prompt, new message, priming and reply fit."""
    return token_limit - max_response_tokens - REPLY_PRIMING - system_tokens - new_tokens


def fit_newest(history: Sequence[StoredMessage], budget: int) -> list[StoredMessage]:
    """The longest newest suffix of `history` within `budget` that starts with a user message.

    Whole messages only; never splits one. Dropping a leading assistant message keeps the
    first message after the system prompt a user message, as the spec requires.
    """
    total = 0
    start = len(history)
    for i in range(len(history) - 1, -1, -1):
        cost = history[i].tokens
        if total + cost > budget:
            break
        total += cost
        start = i
    while start < len(history) and history[start].role != "user":
        start += 1
    return list(history[start:])


def fit_prompt(
    system: StoredMessage,
    history: Sequence[StoredMessage],
    new: StoredMessage,
    token_limit: int,
    max_response_tokens: int,
) -> list[StoredMessage] | None:
    """The prompt SPEC §3 describes, or None when the new message cannot fit even alone."""
    budget = history_budget(token_limit, max_response_tokens, system.tokens, new.tokens)
    if budget < 0:
        return None
    return [system, *fit_newest(history, budget), new]
