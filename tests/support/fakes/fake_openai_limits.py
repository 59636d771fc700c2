"""What the fake model server does that a real OpenAI-compatible server does and the plain fake
would hide: a per-window request / token limit (Azure's RPM/TPM, the API simulator's), a
tokenizer that counts more than tiktoken (llama.cpp's), and an address that refuses connections.
"""

from __future__ import annotations

import math
import re
import socket
import time
from dataclasses import dataclass, field

_DIGIT = re.compile(r"\d")


@dataclass
class RateWindow:
    """Fixed windows of `window_seconds`: at most `requests` requests and `tokens` prompt +
    reply tokens per window (0: no limit). A request over either gets a 429 whose Retry-After
    is the time left in the window (rounded up, as Azure does); refused requests use nothing.
    """

    requests: int = 0
    tokens: int = 0
    window_seconds: float = 60.0
    _origin: float = 0.0
    _index: int = -1
    _used_requests: int = 0
    _used_tokens: int = 0
    admitted: list[float] = field(default_factory=list)
    refused: int = 0

    def admit(self, cost: int) -> float | None:
        """None when admitted, else the seconds to wait (the Retry-After)."""
        now = time.monotonic()
        if not self._origin:
            self._origin = now
        index = int((now - self._origin) // self.window_seconds)
        if index != self._index:
            self._index, self._used_requests, self._used_tokens = index, 0, 0
        over_requests = self.requests and self._used_requests + 1 > self.requests
        over_tokens = self.tokens and self._used_tokens + cost > self.tokens
        if over_requests or over_tokens:
            self.refused += 1
            return max(0.001, self._origin + (index + 1) * self.window_seconds - now)
        self._used_requests += 1
        self._used_tokens += cost
        self.admitted.append(now)
        return None

    @staticmethod
    def retry_after_header(wait: float) -> str:
        return str(max(1, math.ceil(wait)))


def inflated(count: int, text_digits: int, scale: float, digit_weight: float) -> int:
    """A server tokenizer's count: `scale` times ours, digits counted `digit_weight` times
    (llama.cpp's tokenizers: ~4–8% more on English, about 2x on digits)."""
    return math.ceil(count * scale + text_digits * max(digit_weight - 1.0, 0.0))


def digits_in(text: str) -> int:
    return len(_DIGIT.findall(text))


def refused_base_url() -> str:
    """A base URL on a loopback port nothing listens on: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/openai/v1/"
