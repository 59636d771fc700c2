"""Health, readiness and metrics on the shared aiohttp app."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.server import MAX_BODY_BYTES, build_app
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.recording import RecordingReply
from tests.unit.test_responder import message


def settings_for(redis_url: str, key_prefix: str, model_url="http://127.0.0.1:9/v1/") -> Settings:
    return Settings(
        redis_url=redis_url,
        redis_key_prefix=key_prefix,
        openai_base_url=model_url,
        azure_openai_deployment="d",
        azure_openai_api_key="k",
    )


async def client_for(settings: Settings, adapters=()):
    svc = build_service(settings)
    client = TestClient(TestServer(build_app(svc, list(adapters))))
    await client.start_server()
    return svc, client


async def test_healthz_readyz_and_metrics_answer(redis_url, key_prefix):
    async with FakeOpenAI() as fake:
        svc, client = await client_for(settings_for(redis_url, key_prefix, fake.base_url))
        assert (await client.get("/healthz")).status == 200
        r = await client.get("/readyz")
        assert r.status == 200 and (await r.json())["status"] == "ready"
        await svc.responder.handle(message("count me"), RecordingReply())
        text = await (await client.get("/metrics")).text()
        await client.close()
        await svc.close()
    assert 'threadwise_replies_sent_total{platform="slack"} 1.0' in text
    assert 'threadwise_model_tokens_total{kind="prompt"}' in text


async def test_readyz_is_503_naming_the_store_while_it_is_down_and_200_after(
    redis_server, key_prefix
):
    svc, client = await client_for(settings_for(redis_server.url, key_prefix))
    assert (await client.get("/readyz")).status == 200
    redis_server.stop()
    r = await client.get("/readyz")
    assert r.status == 503 and (await r.json()) == {"status": "not ready", "reason": "store"}
    redis_server.start()
    ok = False
    for _ in range(50):
        if (await client.get("/readyz")).status == 200:
            ok = True
            break
    await client.close()
    await svc.close()
    assert ok


class BodyReader:
    """An adapter that reads its body, as the Slack and Teams routes do."""

    def routes(self) -> list[str]:
        return ["/read"]

    def mount(self, app) -> None:
        async def read(request):
            await request.read()
            return web.Response(text="read")

        app.router.add_post("/read", read)


def test_refused_requests_keep_status_and_headers_and_free_their_body_at_once(
    redis_url, key_prefix
):
    # On uvloop, as `serve` runs: there an HTTPException left for aiohttp to handle stays in a
    # reference cycle (exception → traceback → frames → the request and its buffered body), so
    # a flood of oversized bodies sat in memory until the cyclic GC came round.
    uvloop = pytest.importorskip("uvloop")
    settings = settings_for(redis_url, key_prefix)

    async def scenario() -> list:
        svc, client = await client_for(settings, [BodyReader()])
        try:
            gc.collect()
            gc.disable()  # what reference counting alone does not free stays for the check
            try:
                r = await client.post("/read", data=b"x" * (4 * MAX_BODY_BYTES))
                assert r.status == 413
                assert "Maximum request body size" in await r.text()
                await asyncio.sleep(0.05)
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                gc.set_debug(0)
                left = [
                    o
                    for o in gc.garbage
                    if isinstance(o, web.HTTPRequestEntityTooLarge)
                    or (isinstance(o, web.Request) and o.method == "POST")
                ]
                gc.garbage.clear()
                r = await client.get("/read")
                assert r.status == 405 and r.headers["Allow"] == "POST"
                assert (await client.get("/nowhere")).status == 404
                return left
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()
        finally:
            await client.close()
            await svc.close()

    assert uvloop.run(scenario()) == []
