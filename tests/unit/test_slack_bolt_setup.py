"""How the Slack adapter sets bolt up: no warning at start, every client on SLACK_API_URL.

bolt reads SLACK_BOT_TOKEN from the environment by itself, which is where a deployment keeps it;
given a client as well it used to warn that the token "will be unused" on every start.
"""

from __future__ import annotations

import logging

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler

from adapters.slack import SlackAdapter
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    MemoryCache,
    RecordingHandler,
    app_mention,
)
from tests.support.slack_adapter_harness import running


def _adapter(slack: FakeSlack, *, app_token: str | None = None) -> SlackAdapter:
    return SlackAdapter(
        bot_token=slack.token,
        signing_secret=None if app_token else DEFAULT_SIGNING_SECRET,
        app_token=app_token,
        api_url=slack.api_url,
        thread_followups=True,
        handler=RecordingHandler(),
        cache=MemoryCache(),
        metrics=Metrics(),
    )


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_no_bolt_warning_when_the_bot_token_is_also_in_the_environment(monkeypatch, caplog):
    async with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        caplog.set_level(logging.DEBUG)
        for app_token in (None, "xapp-1-test"):  # HTTP mode and Socket Mode build the same app
            adapter = _adapter(slack, app_token=app_token)
            await adapter.close()
    assert not [w for w in _warnings(caplog) if "unused" in w], _warnings(caplog)
    assert _warnings(caplog) == []


async def test_the_clients_are_on_slack_api_url_with_the_bot_token_and_retries(monkeypatch):
    async with FakeSlack() as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-another-token-in-the-environment")
        adapter = _adapter(slack)
        try:
            # bolt's client carries no token (bolt takes it from `authorize`, the start-up
            # auth.test's): it is on SLACK_API_URL too, never on slack.com.
            assert adapter.app.client.base_url == slack.api_url.rstrip("/") + "/"
            assert adapter.app.client.token is None
            assert adapter.client.base_url == slack.api_url.rstrip("/") + "/"
            assert adapter.client.token == slack.token  # the adapter's, not bolt's own look-up
            assert any(
                isinstance(h, AsyncRateLimitErrorRetryHandler)
                for h in adapter.client.retry_handlers
            )
        finally:
            await adapter.close()


async def test_a_signed_event_through_bolt_reaches_the_fake_slack_only_and_logs_no_warning(
    monkeypatch, caplog
):
    async with FakeSlack(users={"U1": "Ann"}) as slack:
        monkeypatch.setenv("SLACK_BOT_TOKEN", slack.token)
        caplog.set_level(logging.DEBUG)
        async with running(slack) as h:
            status, _, _ = await h.event(app_mention("<@UBOT> hello"))
            assert status == 200
            [msg] = await h.handler.wait_for(1)
        methods = slack.methods(exclude=())
    assert msg.user_name == "Ann"  # users.info went to SLACK_API_URL through the one client
    assert "auth.test" in methods
    assert _warnings(caplog) == []
