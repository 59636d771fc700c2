"""The fake's scripted errors and faults (429, 500, content filter, context length, 401, hangs,
dropped streams) reach the real SDK as its own exceptions, retries included."""

from __future__ import annotations

import time

import openai
import pytest

from tests.support.fakes.fake_openai import (
    Error,
    Hang,
    StreamDies,
    context_length_exceeded,
    count_prompt_tokens,
    invalid_unicode,
    prompt_content_filter,
    rate_limited,
    server_error,
)
from tests.support.openai_sdk import USER

# --------------------------------------------------------------------------- errors


async def test_rate_limited_maps_to_rate_limit_error_with_retry_headers(client, fake):
    fake.script(rate_limited(retry_after=2, retry_after_ms=1500))
    with pytest.raises(openai.RateLimitError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    err = info.value
    assert err.status_code == 429
    assert err.code == "429"
    assert err.message.startswith("Error code: 429")
    assert "Requests to the ChatCompletions_Create Operation" in err.body["message"]
    assert err.response.headers["Retry-After"] == "2"
    assert err.response.headers["retry-after-ms"] == "1500"


async def test_server_error_and_invalid_unicode_map_to_internal_server_error(client, fake):
    fake.script(server_error(), invalid_unicode(), invalid_unicode(azure=False))
    for expected in ("error while processing", "invalid content", "invalid Unicode output"):
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="m", messages=USER)
        assert info.value.status_code == 500
        assert expected in info.value.body["message"]


async def test_prompt_content_filter_maps_to_bad_request_with_azure_body(client, fake):
    fake.script(prompt_content_filter("sexual", "high"))
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    err = info.value
    assert err.status_code == 400
    assert err.code == "content_filter"
    assert err.param == "prompt"
    inner = err.body["innererror"]
    assert inner["code"] == "ResponsibleAIPolicyViolation"
    result = inner["content_filter_result"]
    assert result["sexual"] == {"filtered": True, "severity": "high"}
    assert result["hate"] == {"filtered": False, "severity": "safe"}
    assert result["jailbreak"] == {"filtered": False, "detected": False}

    fake.script(prompt_content_filter("jailbreak"))
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="m", messages=USER, stream=True)
    assert info.value.body["innererror"]["content_filter_result"]["jailbreak"]["detected"]


async def test_context_length_exceeded_scripted_or_from_context_window(client, fake):
    fake.script(context_length_exceeded(128000, 130001))
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 128000 tokens" in info.value.message
    assert "resulted in 130001 tokens" in info.value.message

    fake.context_window = 10
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(model="m", messages=USER * 3)
    assert info.value.code == "context_length_exceeded"
    assert f"resulted in {count_prompt_tokens(USER * 3)} tokens" in info.value.message


async def test_custom_error_status_body_and_headers(client, fake):
    fake.script(Error(503, {"error": {"code": "busy", "message": "try later"}}, {"x-why": "load"}))
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert (info.value.status_code, info.value.code) == (503, "busy")
    assert info.value.response.headers["x-why"] == "load"

    fake.script(Error(502, "<html>Bad Gateway</html>"))
    with pytest.raises(openai.InternalServerError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.status_code == 502
    assert info.value.response.text == "<html>Bad Gateway</html>"


async def test_api_key_knob_rejects_wrong_key_with_azure_401(fake, client):
    fake.api_key = "right"
    with pytest.raises(openai.AuthenticationError) as info:
        await client.chat.completions.create(model="m", messages=USER)
    assert info.value.code == "401"
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="right", max_retries=0) as ok:
        r = await ok.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "Echo: hello world"


async def test_hang_triggers_api_timeout_error_and_the_fake_keeps_serving(client, fake):
    fake.script(Hang(30))
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="m", messages=USER, timeout=0.3)
    assert time.monotonic() - started < 5
    r = await client.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "Echo: hello world"


async def test_stream_dies_raises_from_the_iterator(client, fake):
    fake.reply = "one two three four five"
    fake.script(StreamDies(after_chunks=2))
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    received = []
    with pytest.raises(openai.APIConnectionError):
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["one", " two"]


async def test_stream_dies_on_non_streaming_request_drops_the_connection(client, fake):
    fake.script(StreamDies(0))
    with pytest.raises(openai.APIConnectionError):
        await client.chat.completions.create(model="m", messages=USER)


async def test_sdk_retry_honours_retry_after_ms_then_retry_after(fake):
    fake.script(rate_limited(retry_after=2, retry_after_ms=700), rate_limited(retry_after=1))
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="k", max_retries=2) as client:
        r = await client.chat.completions.create(model="m", messages=USER)
    assert r.choices[0].message.content == "Echo: hello world"
    times = [req.received_at for req in fake.requests]
    assert len(times) == 3
    # retry-after-ms (0.7 s) wins over Retry-After (2 s); the SDK's own backoff would be <= 0.5 s
    assert 0.65 <= times[1] - times[0] < 1.9
    # Retry-After alone (1 s) is honoured too
    assert 0.95 <= times[2] - times[1] < 2.5
    assert [req.headers["x-stainless-retry-count"] for req in fake.requests] == ["0", "1", "2"]
