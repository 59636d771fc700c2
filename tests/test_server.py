"""Health, readiness and metrics on the shared aiohttp app."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.server import build_app
from bot.settings import Settings
from tests.fakes.fake_openai import FakeOpenAI
from tests.recording import RecordingReply
from tests.test_responder import message


async def client_for(settings: Settings):
    svc = build_service(settings)
    client = TestClient(TestServer(build_app(svc, [])))
    await client.start_server()
    return svc, client


async def test_healthz_readyz_and_metrics_answer(redis_url, key_prefix):
    async with FakeOpenAI() as fake:
        svc, client = await client_for(
            Settings(
                redis_url=redis_url,
                redis_key_prefix=key_prefix,
                openai_base_url=fake.base_url,
                azure_openai_deployment="d",
                azure_openai_api_key="k",
            )
        )
        assert (await client.get("/healthz")).status == 200
        r = await client.get("/readyz")
        assert r.status == 200 and (await r.json())["status"] == "ready"
        await svc.responder.handle(message("count me"), RecordingReply())
        text = await (await client.get("/metrics")).text()
        await client.close()
        await svc.close()
    assert 'threadwise_replies_sent_total{platform="slack"} 1.0' in text
    assert 'threadwise_model_tokens_total{kind="prompt"}' in text


async def test_readyz_is_503_naming_redis_while_it_is_down_and_200_after(redis_server, key_prefix):
    svc, client = await client_for(
        Settings(
            redis_url=redis_server.url,
            redis_key_prefix=key_prefix,
            openai_base_url="http://127.0.0.1:9/v1/",
            azure_openai_deployment="d",
            azure_openai_api_key="k",
        )
    )
    assert (await client.get("/readyz")).status == 200
    redis_server.stop()
    r = await client.get("/readyz")
    assert r.status == 503 and "Redis" in (await r.json())["reason"]
    redis_server.start()
    ok = False
    for _ in range(50):
        if (await client.get("/readyz")).status == 200:
            ok = True
            break
    await client.close()
    await svc.close()
    assert ok
