"""The fake model's imitations of real OpenAI-compatible servers (llama.cpp, Azure's API
simulator, rate-limited deployments), proven through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import openai
import pytest

from tests.support.fakes.fake_openai import EmptyStream, FakeOpenAI, count_prompt_tokens
from tests.support.fakes.fake_openai_limits import RateWindow, refused_base_url
from tests.support.openai_sdk import USER


async def sse(fake: FakeOpenAI, **body) -> str:
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(
            fake.base_url + "chat/completions",
            json={"model": "m", "messages": USER, "stream": True, **body},
        ) as r,
    ):
        assert r.status == 200
        return await r.text()


async def test_empty_stream_is_200_with_no_event_and_no_done():
    async with FakeOpenAI() as fake:
        fake.script(EmptyStream())
        assert await sse(fake) == ""
        assert "[DONE]" in await sse(fake)  # one request only


async def test_a_context_overflow_can_stream_nothing_like_llama_cpp():
    async with FakeOpenAI(context_window=5, overflow_as_empty_stream=True) as fake:
        assert await sse(fake) == ""
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            with pytest.raises(openai.BadRequestError, match="maximum context length"):
                await c.chat.completions.create(model="m", messages=USER)


async def test_finish_reason_can_travel_inside_delta_like_the_api_simulator():
    async with FakeOpenAI(finish_in_delta=True, azure=False) as fake:
        text = await sse(fake)
    assert '"delta":{"finish_reason":"stop"}' in text
    assert '"finish_reason":"stop"}]' not in text and text.rstrip().endswith("data: [DONE]")


async def test_usage_chunk_can_be_withheld_and_the_cap_field_ignored():
    async with FakeOpenAI(stream_usage=False, reads_cap=("max_tokens",), reply="a " * 50) as f:
        text = await sse(f, stream_options={"include_usage": True}, max_completion_tokens=2)
    assert '"usage":{' not in text and '"finish_reason":"stop"' in text


async def test_the_servers_tokenizer_can_count_more_and_digits_double():
    async with FakeOpenAI(prompt_token_scale=1.5, digit_weight=2.0) as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            msgs = [{"role": "user", "content": "1234 5678"}]
            r = await c.chat.completions.create(model="m", messages=msgs)
    ours = count_prompt_tokens(msgs)
    assert r.usage.prompt_tokens == -(-ours * 3 // 2) + 8


async def test_a_rate_window_answers_429_with_the_time_left_in_it():
    window = RateWindow(requests=2, window_seconds=30)
    async with FakeOpenAI(rate_window=window) as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            for _ in range(2):
                await c.chat.completions.create(model="m", messages=USER)
            with pytest.raises(openai.RateLimitError) as err:
                await c.chat.completions.create(model="m", messages=USER)
    headers = err.value.response.headers
    assert 1 <= int(headers["retry-after"]) <= 30
    assert 0 < float(headers["retry-after-ms"]) <= 30_000
    assert len(window.admitted) == 2 and window.refused == 1


async def test_deployments_can_be_checked_and_a_refused_address_refuses():
    async with FakeOpenAI(deployments=("gpt-4o",)) as fake:
        async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=0) as c:
            await c.chat.completions.create(model="gpt-4o", messages=USER)
            with pytest.raises(openai.NotFoundError):
                await c.chat.completions.create(model="nope", messages=USER)
    async with openai.AsyncOpenAI(base_url=refused_base_url(), api_key="k", max_retries=0) as c:
        with pytest.raises(openai.APIConnectionError):
            await c.chat.completions.create(model="m", messages=USER)
