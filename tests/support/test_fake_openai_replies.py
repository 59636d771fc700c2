"""The fake's JSON replies through the real SDK: reply text, cookbook usage, Azure's extras,
the paths it serves, and finish reasons (length, content filter, max tokens)."""

from __future__ import annotations

import asyncio

import aiohttp
import openai

from tests.support.fakes.fake_openai import Reply, count_prompt_tokens
from tests.support.openai_sdk import USER, collect, o200k

# --------------------------------------------------------------------------- replies


async def test_base_url_has_azure_v1_shape(fake):
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/openai/v1/"


async def test_json_reply_echoes_last_user_message_with_cookbook_usage(fake, client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hello world", "name": "alice"},
    ]
    result = await client.chat.completions.create(model="my-deployment", messages=messages)

    enc = o200k()
    expected_prompt = 3 + sum(
        3 + sum(len(enc.encode(v)) for v in m.values()) + (1 if "name" in m else 0)
        for m in messages
    )
    assert result.object == "chat.completion"
    assert result.id.startswith("chatcmpl-")
    assert result.model == "my-deployment"
    assert result.created > 0
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "Echo: hello world"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.prompt_tokens == expected_prompt == count_prompt_tokens(messages)
    assert result.usage.completion_tokens == len(enc.encode("Echo: hello world"))
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


async def test_raw_json_response_carries_azure_filter_results(fake):
    async with (
        aiohttp.ClientSession() as http,
        http.post(fake.base_url + "chat/completions", json={"model": "m", "messages": USER}) as r,
    ):
        body = await r.json()
    assert r.status == 200
    assert r.headers["x-request-id"]
    assert set(body) >= {"id", "object", "created", "model", "choices", "usage"}
    assert body["prompt_filter_results"][0]["content_filter_results"]["hate"]["filtered"] is False
    assert body["choices"][0]["content_filter_results"]["violence"]["severity"] == "safe"


async def test_fixed_reply_and_reply_fn_sync_or_async(client, fake):
    fake.reply = "fixed text"
    r = await client.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "fixed text"

    fake.reply_fn = lambda messages: f"{len(messages)} messages"
    r = await client.chat.completions.create(model="m", messages=USER * 2)
    assert r.choices[0].message.content == "2 messages"

    async def async_reply(messages):
        await asyncio.sleep(0)
        return messages[-1]["content"].upper()

    fake.reply_fn = async_reply
    r = await client.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "HELLO WORLD"


async def test_echo_reads_text_parts_of_structured_content(client):
    messages = [{"role": "user", "content": [{"type": "text", "text": "parts work"}]}]
    r = await client.chat.completions.create(model="m", messages=messages)
    assert r.choices[0].message.content == "Echo: parts work"


async def test_plain_v1_path_and_models_endpoint(fake):
    root = openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="k", max_retries=0)
    async with root:
        r = await root.chat.completions.create(model="m", messages=USER)
        models = await root.models.list()
    assert r.choices[0].message.content == "Echo: hello world"
    assert fake.requests[0].path == "/v1/chat/completions"
    assert [m.id for m in models.data] == ["gpt-4o"]


# --------------------------------------------------------------------------- finish reasons


async def test_finish_reason_length_and_content_filter_are_surfaced(client, fake):
    fake.script(Reply("cut off mid", finish_reason="length"), Reply("", "content_filter"))
    r = await client.chat.completions.create(model="m", messages=USER)
    assert (r.choices[0].message.content, r.choices[0].finish_reason) == ("cut off mid", "length")
    r = await client.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].finish_reason == "content_filter"
    assert r.choices[0].content_filter_results["violence"]["filtered"] is True

    fake.script(Reply("partial", finish_reason="content_filter"))
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks, text = await collect(stream)
    assert text == "partial"
    assert chunks[-1].choices[0].finish_reason == "content_filter"


async def test_max_completion_tokens_truncates_with_finish_reason_length(client, fake):
    fake.reply = "one two three four five six seven eight nine ten"
    r = await client.chat.completions.create(model="m", messages=USER, max_completion_tokens=3)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3
    assert r.choices[0].message.content == "one two three"


async def test_reply_usage_override(client, fake):
    fake.script(Reply("x", usage={"prompt_tokens": 1000, "completion_tokens": 7}))
    r = await client.chat.completions.create(model="m", messages=USER)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (
        1000,
        7,
        1007,
    )
