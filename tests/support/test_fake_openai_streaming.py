"""The fake's streamed replies are real SSE the SDK reassembles (Azure's extra chunk
included), paced by its delay knobs, in chunks that give the text back."""

from __future__ import annotations

import json
import time

import aiohttp
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fakes.fake_openai import count_prompt_tokens, split_chunks
from tests.support.openai_sdk import USER, collect, o200k

# --------------------------------------------------------------------------- streaming


async def test_stream_reassembles_reply_with_usage_chunk(client, fake):
    fake.reply = "The quick brown fox jumps over the lazy dog, twice."
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks, text = await collect(stream)

    assert text == fake.reply
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in with_choices)
    assert len(with_choices) > 5  # split into word-ish deltas
    assert with_choices[-1].choices[0].finish_reason == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == count_prompt_tokens(USER)
    assert usage_chunk.usage.completion_tokens == len(o200k().encode(fake.reply))


async def test_stream_without_include_usage_sends_no_usage(client):
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks, text = await collect(stream)
    assert text == "Echo: hello world"
    assert all(c.usage is None for c in chunks)


async def test_stream_wire_format_is_real_sse_with_azure_first_chunk(fake):
    payload = {
        "model": "m",
        "messages": USER,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(fake.base_url + "chat/completions", json=payload) as r,
    ):
        raw = (await r.read()).decode()
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    data = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert data[0]["choices"] == [] and data[0]["prompt_filter_results"][0]["prompt_index"] == 0
    assert data[1]["choices"][0]["delta"]["role"] == "assistant"
    assert data[-1]["choices"] == [] and data[-1]["usage"]["total_tokens"] > 0
    assert data[-2]["choices"][0]["finish_reason"] == "stop"


async def test_azure_prompt_filter_chunk_does_not_break_the_sdk_stream_helper(client):
    async with client.chat.completions.stream(
        model="m", messages=USER, stream_options={"include_usage": True}
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == "Echo: hello world"
    assert final.usage.completion_tokens > 0


async def test_plain_openai_shapes_when_azure_extras_are_off(client, fake):
    fake.azure = False
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks, text = await collect(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == "Echo: hello world"
    r = await client.chat.completions.create(model="m", messages=USER)
    assert "prompt_filter_results" not in r.model_dump()


# --------------------------------------------------------------------------- timing


async def test_delay_first_token_delay_and_tokens_per_second_pace_the_stream(client, fake):
    fake.reply = "a b c d e f g h i j"  # ten chunks
    fake.configure(delay=0.15, first_token_delay=0.15, tokens_per_second=50)
    started = time.monotonic()
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    headers_at = time.monotonic() - started
    first_content_at = None
    async for chunk in stream:
        if first_content_at is None and chunk.choices and chunk.choices[0].delta.content:
            first_content_at = time.monotonic() - started
    done_at = time.monotonic() - started
    assert headers_at >= 0.15
    assert first_content_at >= 0.3
    assert done_at - first_content_at >= 9 / 50 - 0.02

    started = time.monotonic()
    await client.chat.completions.create(model="m", messages=USER)
    assert time.monotonic() - started >= 0.15 + 0.15 + 10 / 50 - 0.02


@given(st.text())
def test_split_chunks_round_trips_any_text_in_small_pieces(text):
    pieces = split_chunks(text)
    assert "".join(pieces) == text
    assert all(piece and len(piece.split()) <= 1 for piece in pieces)
    assert all(len("".join(piece.split())) <= 12 for piece in pieces)
