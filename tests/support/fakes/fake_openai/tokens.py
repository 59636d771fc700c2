"""The fake's token counts: o200k_base via tiktoken (offline) and the cookbook's prompt formula."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# tiktoken must work offline: point it at the BPE files shipped with the bot before it loads any.
os.environ.setdefault(
    "TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[4] / "bot" / "tokenizer_data")
)

import tiktoken

ENCODING_NAME = "o200k_base"


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


def count_tokens(text: str) -> int:
    """Tokens of ``text`` in o200k_base (special-token text is counted as ordinary text)."""
    return len(_encoding().encode_ordinary(text)) if text else 0


def _value_tokens(value: Any) -> int:
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, Mapping):
        return sum(_value_tokens(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_value_tokens(v) for v in value)
    return 0


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """The OpenAI cookbook formula for gpt-4o-style models.

    3 tokens per message, plus the tokens of every string value (string leaves of structured
    values such as content parts are counted too), plus 1 per ``name``, plus 3 priming the reply.
    """
    total = 0
    for message in messages:
        total += 3
        for key, value in message.items():
            total += _value_tokens(value)
            if key == "name":
                total += 1
    return total + 3


def _text_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_text_size(v) for v in value)
    return 0
