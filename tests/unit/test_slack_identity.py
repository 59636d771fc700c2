"""One `auth.test` for the bot's identity: start-up's answers every request bolt handles.

Through the real adapter and slack_sdk client against FakeSlack, which counts the calls.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.slack import SlackAdapter
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    MemoryCache,
    RecordingHandler,
    app_mention,
    event_callback,
    new_ts,
    signed_headers,
)
from tests.support.slack_adapter_harness import running


@pytest.fixture
async def slack():
    async with FakeSlack(users={"U1": "Ann"}) as fake:
        yield fake


async def _burst(url: str, n: int) -> list[int]:
    async def one(http: aiohttp.ClientSession) -> int:
        event = app_mention("<@UBOT> hello", channel="C1", ts=new_ts())
        body = json.dumps(event_callback(event))
        headers = signed_headers(body, DEFAULT_SIGNING_SECRET)
        async with http.post(url, data=body, headers=headers) as r:
            return r.status

    async with aiohttp.ClientSession() as http:
        return await asyncio.gather(*(one(http) for _ in range(n)))


async def test_a_cold_burst_of_100_mentions_makes_only_the_start_up_auth_test(slack):
    async with running(slack) as h:
        assert await _burst(h.url, 100) == [200] * 100
        messages = await h.handler.wait_for(100)
        assert len(slack.calls_to("auth.test")) == 1
        assert {m.workspace for m in messages} == {slack.team_id}  # the installation's


async def test_without_a_start_up_answer_concurrent_requests_share_one_auth_test(slack):
    slack.fail("auth.test", status=500, times=None)
    handler = RecordingHandler()
    adapter = SlackAdapter(
        bot_token=slack.token,
        signing_secret=DEFAULT_SIGNING_SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=True,
        handler=handler,
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    app = web.Application()
    adapter.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await adapter.start()  # Slack down at start-up is not fatal
        slack.reset()  # Slack is back; nothing asked it since
        assert await _burst(str(server.make_url("/slack/events")), 50) == [200] * 50
        await handler.wait_for(50)
        assert len(slack.calls_to("auth.test")) == 1
    finally:
        await adapter.close()
        await server.close()
