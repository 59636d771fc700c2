"""The Slack adapter over HTTP, for its tests: signed requests in, replies through Slack.

`running` starts a `SlackAdapter` on a local aiohttp server with the core replaced by a
recording `MessageHandler` and Slack's Web API by `FakeSlack`, reached through the real
slack_sdk client. The test modules import the fixtures (`slack`, `h`) by name.
"""

from __future__ import annotations

import json
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
    event_callback,
    form,
    signed_headers,
    slash_command,
)

SECRET = DEFAULT_SIGNING_SECRET


@dataclass
class Harness:
    slack: FakeSlack
    handler: RecordingHandler
    adapter: SlackAdapter
    cache: MemoryCache
    metrics: Metrics
    url: str
    http: aiohttp.ClientSession

    async def post(self, body: str | bytes, headers: dict[str, str]) -> tuple[int, str, float]:
        started = time.monotonic()
        async with self.http.post(self.url, data=body, headers=headers) as r:
            return r.status, await r.text(), time.monotonic() - started

    async def event(self, event: dict, *, retry_num: int | None = None, event_id=None):
        body = json.dumps(event_callback(event, event_id=event_id))
        return await self.post(body, signed_headers(body, SECRET, retry_num=retry_num))

    async def command(self, text: str, **kw):
        fields = slash_command(text, response_url=self.slack.response_url("cmd"), **kw)
        body = form(fields)
        headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
        status, out, _ = await self.post(body, headers)
        return status, out, fields

    def count(self, kind: str) -> float:
        return self.metrics.events.labels("slack", kind)._value.get()


@asynccontextmanager
async def running(slack: FakeSlack, *, script=None, followups: bool = True):
    handler = RecordingHandler(script)
    cache = MemoryCache()
    metrics = Metrics()
    adapter = SlackAdapter(
        bot_token=slack.token,
        signing_secret=SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=followups,
        handler=handler,
        cache=cache,
        metrics=metrics,
    )
    app = web.Application()
    adapter.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    await adapter.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Harness(
                slack, handler, adapter, cache, metrics, str(server.make_url("/slack/events")), http
            )
    finally:
        await adapter.close()
        await server.close()


@pytest.fixture
async def slack():
    users = {"U1": "Ann", "U2": {"display_name": "", "real_name": "Bob Stone"}}
    async with FakeSlack(users=users) as fake:
        yield fake


@pytest.fixture
async def h(slack):
    async with running(slack) as harness:
        yield harness
