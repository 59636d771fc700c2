"""How much more the model's server counts than we do, learnt from its `usage.prompt_tokens`.

Threadwise counts prompts with tiktoken (`bot.tokens`). A server with another tokenizer counts
the same prompt differently — llama.cpp's, for instance, 4–8% more on English and about twice as
many on digits — so a prompt that fits our count can overflow the server's context. Each
answered turn whose usage reports more prompt tokens than we counted teaches the ratio; the
budget (`budget_limit`) shrinks by it. A server that reports no usage teaches nothing: there
`TOKEN_SAFETY_MARGIN` (a fixed percentage) is the only margin.

The ratio is per deployment (one client may in principle serve several), never below 1 (a
server counting fewer tokens leaves our count as the conservative one) and never above
`MAX_RATIO`, so one odd report cannot starve the prompt. It is the largest of the last
`WINDOW` observations: a prompt full of digits after many of prose must not overflow.
"""

from __future__ import annotations

import math
from collections import deque

from bot.trimming import REPLY_PRIMING

MAX_RATIO = 3.0
WINDOW = 50
# Prompts smaller than this say little about a ratio (framing tokens dominate them).
MIN_PROMPT = 32


class TokenRatio:
    """Observed server/own prompt-token ratio per deployment, and the budget it implies."""

    def __init__(self, margin_percent: float = 0.0) -> None:
        self.margin = 1.0 + max(margin_percent, 0.0) / 100.0
        self._seen: dict[str, deque[float]] = {}

    def observe(self, deployment: str, reported: int | None, ours: int) -> None:
        """Learn from one turn: `reported` is the server's usage.prompt_tokens (None: not sent)."""
        if reported is None or ours < MIN_PROMPT or reported <= 0:
            return
        ratio = min(max(reported / ours, 1.0), MAX_RATIO)
        self._seen.setdefault(deployment, deque(maxlen=WINDOW)).append(ratio)

    def ratio(self, deployment: str) -> float:
        """The factor our counts are multiplied by when budgeting (>= the fixed margin)."""
        seen = self._seen.get(deployment)
        observed = max(seen) if seen else 1.0
        return max(observed, self.margin)

    def budget_limit(self, deployment: str, token_limit: int, max_response_tokens: int) -> int:
        """A TOKEN_LIMIT, in our tokens, under which a prompt fits the server's TOKEN_LIMIT.

        The prompt budget (`trimming.prompt_budget`) is divided by the ratio; the reply's
        reservation and the priming are kept as they are.
        """
        factor = self.ratio(deployment)
        room = token_limit - max_response_tokens - REPLY_PRIMING
        if factor <= 1.0 or room <= 0:
            return token_limit
        return max_response_tokens + REPLY_PRIMING + math.floor(room / factor)
