"""The fake Azure OpenAI server, proven through the real ``openai.AsyncOpenAI`` client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
import openai
import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fakes.fake_openai import (
    Error,
    FakeOpenAI,
    FakeOpenAIControl,
    Hang,
    Reply,
    StreamDies,
    behaviour_from_dict,
    context_length_exceeded,
    count_prompt_tokens,
    invalid_unicode,
    prompt_content_filter,
    rate_limited,
    server_error,
    split_chunks,
)

REPO = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "hello world"}]


@pytest.fixture
async def fake():
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake):
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as c:
        yield c


def _enc() -> tiktoken.Encoding:
    return tiktoken.get_encoding("o200k_base")


async def _collect(stream) -> tuple[list, str]:
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return chunks, text


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

    enc = _enc()
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


# --------------------------------------------------------------------------- streaming


async def test_stream_reassembles_reply_with_usage_chunk(client, fake):
    fake.reply = "The quick brown fox jumps over the lazy dog, twice."
    stream = await client.chat.completions.create(
        model="m", messages=USER, stream=True, stream_options={"include_usage": True}
    )
    chunks, text = await _collect(stream)

    assert text == fake.reply
    with_choices = [c for c in chunks if c.choices]
    assert with_choices[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in with_choices)
    assert len(with_choices) > 5  # split into word-ish deltas
    assert with_choices[-1].choices[0].finish_reason == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == count_prompt_tokens(USER)
    assert usage_chunk.usage.completion_tokens == len(_enc().encode(fake.reply))


async def test_stream_without_include_usage_sends_no_usage(client):
    stream = await client.chat.completions.create(model="m", messages=USER, stream=True)
    chunks, text = await _collect(stream)
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
    chunks, text = await _collect(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == "Echo: hello world"
    r = await client.chat.completions.create(model="m", messages=USER)
    assert "prompt_filter_results" not in r.model_dump()


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
    chunks, text = await _collect(stream)
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


# --------------------------------------------------------------------------- script & records


async def test_script_is_fifo_accepts_dicts_then_falls_back_to_default(client, fake):
    fake.script({"type": "reply", "text": "first"}, Reply("second"))
    fake.script({"type": "server_error"})
    replies = []
    for _ in range(2):
        r = await client.chat.completions.create(model="m", messages=USER)
        replies.append(r.choices[0].message.content)
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model="m", messages=USER)
    r = await client.chat.completions.create(model="m", messages=USER)
    assert [*replies, r.choices[0].message.content] == ["first", "second", "Echo: hello world"]
    assert not fake.queue


def test_behaviour_from_dict_builds_every_kind_and_rejects_unknown():
    assert behaviour_from_dict({"type": "hang", "seconds": 2}) == Hang(2)
    assert behaviour_from_dict({"type": "stream_dies", "after_chunks": 3}) == StreamDies(3)
    limited = behaviour_from_dict({"type": "rate_limited", "retry_after": 4, "retry_after_ms": 5})
    assert limited.headers["Retry-After"] == "4" and limited.headers["retry-after-ms"] == "5"
    cf = behaviour_from_dict({"type": "prompt_content_filter", "category": "hate"})
    assert cf.body["error"]["innererror"]["content_filter_result"]["hate"]["filtered"]
    assert behaviour_from_dict({"type": "error", "status": 418}).status == 418
    for kind in ("server_error", "invalid_unicode", "context_length_exceeded"):
        assert isinstance(behaviour_from_dict({"type": kind}), Error)
    with pytest.raises(ValueError):
        behaviour_from_dict({"type": "nope"})
    with pytest.raises(ValueError):
        behaviour_from_dict({"type": "hang", "minutes": 1})


async def test_records_body_path_headers_and_last_messages(fake, client):
    messages = [{"role": "system", "content": "You are Threadwise."}, *USER]
    await client.chat.completions.create(model="dep", messages=messages, temperature=0.2)
    recorded = fake.requests[-1]
    assert recorded.path == "/openai/v1/chat/completions"
    assert recorded.method == "POST"
    assert recorded.headers["authorization"] == "Bearer sk-test"
    assert recorded.body["model"] == "dep" and recorded.body["temperature"] == 0.2
    assert fake.last_messages()[0] == {"role": "system", "content": "You are Threadwise."}
    assert fake.chat_requests == [recorded]

    azure = openai.AsyncAzureOpenAI(
        azure_endpoint=fake.url, api_key="azure-key", api_version="2024-10-21", max_retries=0
    )
    async with azure:
        r = await azure.chat.completions.create(model="my-dep", messages=USER)
    assert r.model == "my-dep"
    assert fake.requests[-1].headers["api-key"] == "azure-key"
    assert fake.requests[-1].path == "/openai/deployments/my-dep/chat/completions"

    fake.reset()
    assert fake.requests == []
    with pytest.raises(LookupError):
        fake.last_messages()


async def test_rejects_a_body_without_messages(fake):
    async with (
        aiohttp.ClientSession() as http,
        http.post(fake.base_url + "chat/completions", json={"model": "m"}) as r,
    ):
        body = await r.json()
    assert r.status == 400
    assert body["error"]["type"] == "invalid_request_error"


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


# --------------------------------------------------------------------------- standalone


async def test_standalone_process_is_scriptable_over_http():
    env = {k: v for k, v in os.environ.items() if k != "TIKTOKEN_CACHE_DIR"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.fakes.fake_openai",
        "--port",
        "0",
        "--reply",
        "from another process",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=20)).decode().strip()
        assert line.startswith("READY http://127.0.0.1:"), line
        base_url = line.removeprefix("READY ")
        assert base_url.endswith("/openai/v1/")
        root = base_url.removesuffix("/openai/v1/")

        async with aiohttp.ClientSession() as http:
            script = [{"type": "rate_limited", "retry_after": 1}, {"type": "reply", "text": "2nd"}]
            async with http.post(root + "/_fake/script", json=script) as r:
                assert r.status == 200 and (await r.json())["queued"] == 2
            async with http.post(root + "/_fake/script", json=[{"type": "bogus"}]) as r:
                assert r.status == 400

        async with openai.AsyncOpenAI(base_url=base_url, api_key="tok", max_retries=0) as client:
            with pytest.raises(openai.RateLimitError):
                await client.chat.completions.create(model="m", messages=USER)
            second = await client.chat.completions.create(model="m", messages=USER)
            third = await client.chat.completions.create(model="m", messages=USER)
        assert second.choices[0].message.content == "2nd"
        assert third.choices[0].message.content == "from another process"
        assert third.usage.prompt_tokens == count_prompt_tokens(USER)

        control = FakeOpenAIControl(base_url)
        recorded = await control.requests()
        assert len(recorded) == 3
        assert recorded[0]["path"] == "/openai/v1/chat/completions"
        assert recorded[0]["headers"]["authorization"] == "Bearer tok"
        assert recorded[-1]["body"]["messages"] == USER
        await control.configure(reply="configured")
        await control.script(Reply("queued by helper"))
        async with openai.AsyncOpenAI(base_url=base_url, api_key="tok", max_retries=0) as client:
            r = await client.chat.completions.create(model="m", messages=USER)
            assert r.choices[0].message.content == "queued by helper"
        await control.reset()
        assert await control.requests() == []

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
