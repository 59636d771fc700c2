"""Fitting a conversation into the token limit (docs/spec.md §3).

Every stored message carries its own token count, so fitting is arithmetic on integers: the
prompt is built newest-first until the next older message would break the limit. The Redis
store runs the same rule server-side (`bot/store/lua/load.lua`); this is the reference the
property tests check, and the in-process store's implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.tokens import TOKENS_PER_MESSAGE

# The reply is primed with `<|start|>assistant<|message|>`: 3 tokens of every prompt (cookbook).
REPLY_PRIMING = 3
# What a message costs beyond its text: its framing and its role ("system" and "user" are one
# token in every encoding tiktoken ships). The smallest user message holds one token of text.
SYSTEM_FRAMING = TOKENS_PER_MESSAGE + 1
SMALLEST_MESSAGE = TOKENS_PER_MESSAGE + 1 + 1
# PROMPT_MAX_TOKENS when TOKEN_LIMIT leaves room for it (`default_prompt_max_tokens`).
PROMPT_MAX_TOKENS_CAP = 2000


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One history message as stored: the model-facing fields plus its cookbook token count.

    `parts` are the message's files and images as OpenAI content parts (bot/attachments.py);
    `tokens` counts them too, so a message and its attachments are fitted and dropped as one.
    """

    role: str
    content: str
    tokens: int
    name: str | None = None
    # Keyword-only, so that neither can be given for the other by position.
    parts: tuple[dict[str, Any], ...] = field(default=(), kw_only=True)
    # Whose turn this message belongs to (`<platform>:<workspace>:<user id>`, the asker for an
    # assistant reply too), so a data-subject request can find and erase it; never sent.
    user: str | None = field(default=None, kw_only=True)

    def to_openai(self) -> dict[str, Any]:
        msg: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.parts:
            text = [{"type": "text", "text": self.content}] if self.content else []
            msg["content"] = [*text, *self.parts]
        if self.name:
            msg["name"] = self.name
        return msg


def prompt_budget(token_limit: int, max_response_tokens: int) -> int:
    """Tokens the prompt's messages may take: docs/spec.md §3's
    count(prompt) + MAX_RESPONSE_TOKENS <= TOKEN_LIMIT, with the reply priming (part of the count)
    set aside.

    The one budget formula: the responder, the store's trimming and the settings check use it.
    """
    return token_limit - max_response_tokens - REPLY_PRIMING


def history_budget(
    token_limit: int, max_response_tokens: int, system_tokens: int, new_tokens: int
) -> int:
    """Tokens left for history once the system prompt, new message, priming and reply fit."""
    return prompt_budget(token_limit, max_response_tokens) - system_tokens - new_tokens


def largest_prompt(token_limit: int, max_response_tokens: int) -> int:
    """The most tokens a system prompt's text may have and still leave room for a message."""
    return prompt_budget(token_limit, max_response_tokens) - SYSTEM_FRAMING - SMALLEST_MESSAGE


def default_prompt_max_tokens(token_limit: int, max_response_tokens: int) -> int:
    """PROMPT_MAX_TOKENS when unset: the cap, or half of `largest_prompt` (rounded up) when the
    limits are too small for the cap, so a message as long as the longest prompt still fits.

    At least 1 whenever the limits hold any prompt and message (`largest_prompt` >= 1).
    """
    return min(PROMPT_MAX_TOKENS_CAP, (largest_prompt(token_limit, max_response_tokens) + 1) // 2)


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
    context: Sequence[StoredMessage] = (),
) -> list[StoredMessage] | None:
    """The prompt docs/spec.md §3 describes, or None when the new message cannot fit even alone.

    `context` (the running summary) follows the system prompt and counts in the budget: the
    history fits in what is left.
    """
    head = system.tokens + sum(m.tokens for m in context)
    budget = history_budget(token_limit, max_response_tokens, head, new.tokens)
    if budget < 0:
        return None
    return [system, *context, *fit_newest(history, budget), new]
