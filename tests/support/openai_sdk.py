"""What the fake model's tests share: a one-message prompt, the o200k encoding, stream reading."""

from __future__ import annotations

import tiktoken

USER = [{"role": "user", "content": "hello world"}]


def o200k() -> tiktoken.Encoding:
    return tiktoken.get_encoding("o200k_base")


async def collect(stream) -> tuple[list, str]:
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text
