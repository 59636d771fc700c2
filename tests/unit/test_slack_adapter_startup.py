"""Start-up: 503 until the bot knows who it is, a revoked token is fatal, routes per transport."""

from __future__ import annotations

import json

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.slack import SlackAdapter
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import (
    MemoryCache,
    RecordingHandler,
    app_mention,
    event_callback,
    signed_headers,
)
from tests.support.slack_adapter_harness import SECRET, slack

__all__ = ["slack"]  # the fixture


# -- Slack unavailable -----------------------------------------------------------------------


async def test_events_get_503_while_the_bot_cannot_learn_who_it_is(slack):
    slack.fail("auth.test", status=500, times=None)
    handler = RecordingHandler()
    adapter = SlackAdapter(
        bot_token=slack.token,
        signing_secret=SECRET,
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
        body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
        async with aiohttp.ClientSession() as http:
            url = str(server.make_url("/slack/events"))
            async with http.post(url, data=body, headers=signed_headers(body, SECRET)) as r:
                assert r.status == 503
            slack.reset()
            async with http.post(url, data=body, headers=signed_headers(body, SECRET)) as r:
                assert r.status == 200
        await handler.wait_for(1)
    finally:
        await adapter.close()
        await server.close()


async def test_a_revoked_token_stops_start_up(slack):
    adapter = SlackAdapter(
        bot_token="xoxb-revoked",
        signing_secret=SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=True,
        handler=RecordingHandler(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    with pytest.raises(RuntimeError, match="SLACK_BOT_TOKEN"):
        await adapter.start()


def test_http_mode_needs_a_signing_secret():
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(
            bot_token="xoxb-x",
            signing_secret=None,
            app_token=None,
            api_url="http://127.0.0.1:9/api/",
            thread_followups=True,
            handler=RecordingHandler(),
            cache=MemoryCache(),
            metrics=Metrics(),
        )


def test_routes_name_the_transport():
    common = dict(
        bot_token="xoxb-x",
        api_url="http://127.0.0.1:9/api/",
        thread_followups=True,
        handler=RecordingHandler(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )
    http = SlackAdapter(signing_secret="s", app_token=None, **common)
    socket = SlackAdapter(signing_secret=None, app_token="xapp-1", **common)
    assert http.routes() == ["POST /slack/events"]
    assert socket.routes() == ["Socket Mode (outbound WebSocket to Slack)"]
    app = web.Application()
    socket.mount(app)
    assert len(app.router.routes()) == 0
