"""Token counting the way OpenAI's cookbook counts chat input, offline.

The BPE files ship in `bot/tokenizer_data/` under the names tiktoken's cache uses (the sha1 of
their download URL); tiktoken itself checks them against its published sha256. We point
`TIKTOKEN_CACHE_DIR` there only when the operator has not chosen a cache of their own.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from pathlib import Path

import tiktoken

TOKENIZER_DATA = Path(__file__).with_name("tokenizer_data")
DEFAULT_ENCODING = "o200k_base"

# Cookbook constants: every message costs 3 tokens of framing, a `name` one more. (The 3 tokens
# priming the reply belong to the whole prompt: `bot.trimming.REPLY_PRIMING`.)
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1

# Above this many characters, encoding runs in a worker thread (tiktoken releases the GIL), so a
# pasted novel never stalls the event loop; below it the thread hop costs more than the work.
_THREAD_THRESHOLD = 4096


def _use_packaged_cache() -> None:
    if not os.environ.get("TIKTOKEN_CACHE_DIR") and not os.environ.get("DATA_GYM_CACHE_DIR"):
        os.environ["TIKTOKEN_CACHE_DIR"] = str(TOKENIZER_DATA)


def encoding_name_for(model: str | None, deployment: str | None) -> str:
    """docs/spec.md §3: the model's encoding, else the deployment's if tiktoken knows it, else
    o200k."""
    for name in (model, deployment):
        if not name:
            continue
        try:
            return tiktoken.encoding_name_for_model(name)
        except KeyError:
            continue
    return DEFAULT_ENCODING


@lru_cache(maxsize=4)
def _encoding(name: str) -> tiktoken.Encoding:
    _use_packaged_cache()
    return tiktoken.get_encoding(name)


class TokenCounter:
    """Counts text and chat messages with one encoding; caches the counts of repeated texts.

    The cache holds system prompts and command words: a handful of strings, bounded.
    """

    def __init__(self, encoding_name: str = DEFAULT_ENCODING) -> None:
        self.encoding_name = encoding_name
        self._enc = _encoding(encoding_name)
        self._cached = lru_cache(maxsize=256)(self._count_uncached)

    def _count_uncached(self, text: str) -> int:
        return len(self._enc.encode(text, disallowed_special=()))

    def count(self, text: str) -> int:
        """Tokens of one string (synchronous; use `acount` for text of unknown size)."""
        if len(text) <= 512:
            return self._cached(text)
        return self._count_uncached(text)

    async def acount(self, text: str) -> int:
        if len(text) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(self._count_uncached, text)
        return self.count(text)

    def message_tokens(self, role: str, content: str, name: str | None = None) -> int:
        """One message's share of the prompt: framing + every string value (+1 for a name)."""
        total = TOKENS_PER_MESSAGE + self.count(role) + self.count(content)
        if name:
            total += self.count(name) + TOKENS_PER_NAME
        return total

    async def amessage_tokens(self, role: str, content: str, name: str | None = None) -> int:
        total = TOKENS_PER_MESSAGE + self.count(role) + await self.acount(content)
        if name:
            total += self.count(name) + TOKENS_PER_NAME
        return total
