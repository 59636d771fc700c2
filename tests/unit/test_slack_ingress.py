"""Slack ingress: each request's signature is checked once, and only through bolt's public API.

The adapter checks the signature itself (401 before any parsing) and builds bolt with
`request_verification_enabled=False`; these tests count the HMACs computed with the signing
secret while a request is handled, so they hold whoever would do the second check.
"""

from __future__ import annotations

import hmac
import json
from contextlib import asynccontextmanager
from pathlib import Path

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
    form,
    signed_headers,
    slash_command,
)
from tests.support.fakes.fake_socket_mode import FakeSocketMode

SECRET = DEFAULT_SIGNING_SECRET
SLACK_ADAPTER = Path(__file__).resolve().parents[2] / "adapters" / "slack"


def adapter_for(slack: FakeSlack, handler: RecordingHandler, **kw) -> SlackAdapter:
    settings = {"signing_secret": SECRET, "app_token": None, **kw}
    return SlackAdapter(
        bot_token=slack.token,
        api_url=slack.api_url,
        thread_followups=True,
        handler=handler,
        cache=MemoryCache(),
        metrics=Metrics(),
        **settings,
    )


@asynccontextmanager
async def http_adapter():
    async with FakeSlack(users={"U1": "Ann"}) as slack:
        handler = RecordingHandler()
        adapter = adapter_for(slack, handler)
        app = web.Application()
        adapter.mount(app)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        await adapter.start()
        try:
            async with aiohttp.ClientSession() as http:
                yield slack, handler, str(server.make_url("/slack/events")), http
        finally:
            await adapter.close()
            await server.close()


@pytest.fixture
def secret_hmacs(monkeypatch):
    """How many HMACs are computed with the signing secret (ours and slack_sdk's both call
    `hmac.new`), counted from when the test sets `counting[0]`."""
    real = hmac.new
    counting = [False]
    calls: list[None] = []

    def spy(key, msg=None, digestmod=""):
        if counting[0] and key == SECRET.encode():
            calls.append(None)
        return real(key, msg, digestmod)

    monkeypatch.setattr(hmac, "new", spy)
    return counting, calls


async def test_a_signed_event_is_verified_once(secret_hmacs):
    counting, calls = secret_hmacs
    async with http_adapter() as (_, handler, url, http):
        body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
        headers = signed_headers(body, SECRET)
        counting[0] = True
        async with http.post(url, data=body, headers=headers) as r:
            assert r.status == 200
        await handler.wait_for(1)
        assert len(calls) == 1


async def test_a_signed_slash_command_is_verified_once(secret_hmacs):
    counting, calls = secret_hmacs
    async with http_adapter() as (slack, handler, url, http):
        body = form(slash_command("usage", response_url=slack.response_url("cmd")))
        headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
        counting[0] = True
        async with http.post(url, data=body, headers=headers) as r:
            assert r.status == 200
        [msg] = await handler.wait_for(1)
        assert msg.text == "!usage"
        assert len(calls) == 1


async def test_a_badly_signed_request_is_refused_by_the_one_check(secret_hmacs):
    counting, calls = secret_hmacs
    async with http_adapter() as (_, handler, url, http):
        body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
        headers = signed_headers(body, "not-the-secret")
        counting[0] = True
        async with http.post(url, data=body, headers=headers) as r:
            assert r.status == 401
        assert len(calls) == 1
        assert handler.submitted == []


async def test_socket_mode_envelopes_are_not_signature_checked(secret_hmacs):
    counting, calls = secret_hmacs
    async with FakeSlack(users={"U1": "Ann"}) as slack, FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        handler = RecordingHandler()
        adapter = adapter_for(slack, handler, app_token=slack.app_token)
        await adapter.start()
        try:
            await sm.wait_connected()
            counting[0] = True
            await sm.wait_ack(await sm.send_event(event_callback(app_mention("<@UBOT> hi"))))
            await handler.wait_for(1)
        finally:
            await adapter.close()
    assert calls == []


async def test_socket_mode_start_opens_one_connection_url():
    # start() connects through the socket client's public reconnect step; a second URL opened
    # here would be a wasted ticket (and a second apps.connections.open per start).
    async with FakeSlack() as slack, FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        adapter = adapter_for(slack, RecordingHandler(), app_token=slack.app_token)
        await adapter.start()
        try:
            await sm.wait_connected()
            assert len(slack.calls_to("apps.connections.open")) == 1
        finally:
            await adapter.close()


async def test_a_refused_app_token_fails_start_with_slacks_reason():
    # Slack's own error code, not a timeout: the connection URL is asked for once, up front,
    # rather than by a connect loop that retries a refused token until start-up gives up.
    async with FakeSlack() as slack:
        slack.fail("apps.connections.open", error="invalid_auth", times=None)
        adapter = adapter_for(slack, RecordingHandler(), app_token="xapp-wrong")
        with pytest.raises(RuntimeError, match=r"SLACK_APP_TOKEN: .*\(invalid_auth\)"):
            await adapter.start()
        await adapter.close()
        assert len(slack.calls_to("apps.connections.open")) == 1


@pytest.mark.parametrize(
    "internal",
    ["slack_bolt.request.async_internals", "slack_bolt.request.internals", "build_async_context"],
)
def test_the_slack_adapter_uses_no_private_bolt_internals(internal):
    # The bolt version is pinned, but a private helper can still change shape in any release.
    for source in SLACK_ADAPTER.glob("*.py"):
        assert internal not in source.read_text(), f"{source.name} uses {internal}"


def test_the_slack_adapter_never_sets_the_socket_clients_url():
    for source in SLACK_ADAPTER.glob("*.py"):
        assert ".wss_uri" not in source.read_text(), f"{source.name} sets the socket URL"
