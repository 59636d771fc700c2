"""The model's wire format as `bot.model_http` reads it: SSE framing and error responses, each
from a local server that answers with exactly the bytes a real server (or proxy) may send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bot.model_errors import ModelError
from bot.model_http import ModelHTTP

BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@asynccontextmanager
async def server(status: int, payload: bytes, content_type: str) -> AsyncIterator[str]:
    seen: list[web.Request] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(status=status, body=payload, content_type=content_type)

    app = web.Application()
    app.router.add_post("/openai/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/openai/v1/"
    finally:
        await runner.cleanup()


def http(url: str, key="k") -> ModelHTTP:
    return ModelHTTP(url, key, timeout=5, connect_timeout=5, pool=4)


async def events(url: str) -> tuple[list[dict], bool]:
    client = http(url)
    try:
        async with await client.stream(BODY) as stream:
            got = [e async for e in stream]
            return got, stream.done
    finally:
        await client.close()


async def test_sse_comments_crlf_and_multi_line_data_are_read_as_the_sse_format_says():
    sse = (
        b": keep-alive comment\r\n\r\n"
        b'data: {"choices": [{"delta": \r\ndata: {"content": "Hel"}}]}\r\n\r\n'
        b'data:{"choices":[{"delta":{"content":"lo"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    async with server(200, sse, "text/event-stream") as url:
        got, done = await events(url)
    assert [e["choices"][0]["delta"]["content"] for e in got] == ["Hel", "lo"]
    assert done


async def test_a_stream_that_ends_without_done_says_so():
    sse = b'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n'
    async with server(200, sse, "text/event-stream") as url:
        got, done = await events(url)
    assert len(got) == 1 and not done


async def test_an_error_event_in_a_200_stream_is_a_model_error_by_its_message():
    sse = b'event: error\ndata: {"error": {"message": "the prompt exceeds the context size"}}\n\n'
    async with server(200, sse, "text/event-stream") as url:
        with pytest.raises(ModelError) as err:
            await events(url)
    assert err.value.kind == "context_length"


async def test_an_event_that_is_not_json_is_a_server_error_not_a_crash():
    async with server(200, b"data: {not json\n\n", "text/event-stream") as url:
        with pytest.raises(ModelError) as err:
            await events(url)
    assert err.value.kind == "server_error"


async def test_a_proxys_html_error_page_is_classified_by_its_status():
    page = b"<html><body>502 Bad Gateway</body></html>"
    async with server(502, page, "text/html") as url:
        with pytest.raises(ModelError) as err:
            await events(url)
    assert err.value.kind == "server_error" and "502" in err.value.detail


async def test_azures_content_filter_body_is_named_content_filter():
    body = (
        b'{"error": {"code": "content_filter", "message": "filtered", '
        b'"innererror": {"code": "ResponsibleAIPolicyViolation"}}}'
    )
    async with server(400, body, "application/json") as url:
        with pytest.raises(ModelError) as err:
            await events(url)
    assert err.value.kind == "content_filter"


async def test_an_entra_token_provider_is_asked_for_each_request_and_sent_as_bearer():
    tokens = iter(["t1", "t2"])
    seen: list[str] = []

    async def provider() -> str:
        return next(tokens)

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers["Authorization"])
        return web.json_response({"choices": [{"message": {"content": "pong"}}]})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    client = http(f"http://127.0.0.1:{port}/v1", key=provider)
    try:
        for _ in range(2):
            resp = await client.post({"model": "m", "messages": []})
            assert resp["choices"][0]["message"]["content"] == "pong"
    finally:
        await client.close()
        await runner.cleanup()
    assert seen == ["Bearer t1", "Bearer t2"]


async def test_a_refused_connection_is_unreachable():
    from tests.support.fakes.fake_openai_limits import refused_base_url

    client = http(refused_base_url())
    try:
        with pytest.raises(ModelError) as err:
            await client.stream(BODY)
    finally:
        await client.close()
    assert err.value.kind == "unreachable"
