"""Scripting the fake (in process, and over HTTP in another process) and what it records."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import openai
import pytest

from tests.support.fakes.fake_openai import (
    Error,
    FakeOpenAIControl,
    Hang,
    Reply,
    StreamDies,
    behaviour_from_dict,
    count_prompt_tokens,
)
from tests.support.openai_sdk import USER

REPO = Path(__file__).resolve().parents[2]


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
