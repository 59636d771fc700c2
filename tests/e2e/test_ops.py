"""Operating the service (issue "ship it"): start-up, shutdown, metrics, logs, docs in sync."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import uuid
from pathlib import Path

import aiohttp
import pytest

from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    app_mention,
    event_callback,
    new_ts,
    signed_headers,
)
from tests.support.helpers import ROOT, ServeProcess, delete_prefix

pytestmark = pytest.mark.e2e

SECRETS = {
    "SLACK_BOT_TOKEN": None,  # filled with the fake's token
    "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
    "OPENAI_API_KEY": "sk-test-very-secret-key-123",
}
USER_TEXT = "my-private-question-about-payroll"


def _env(slack: FakeSlack, model: FakeOpenAI, redis_url: str, prefix: str, **extra) -> dict:
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": SECRETS["OPENAI_API_KEY"],
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "LLM_MAX_RETRIES": "0",
        **extra,
    }


async def _mention(svc: ServeProcess, text: str) -> tuple[str, str]:
    ch = "C" + uuid.uuid4().hex[:9].upper()
    ts = new_ts()
    body = json.dumps(event_callback(app_mention(text, channel=ch, ts=ts, user="U1")))
    async with aiohttp.ClientSession() as http:
        async with http.post(
            svc.url + "/slack/events",
            data=body,
            headers=signed_headers(body, DEFAULT_SIGNING_SECRET),
        ) as r:
            assert r.status == 200
    return ch, ts


async def test_sigterm_finishes_the_reply_in_flight_then_exits_zero(redis_url):
    prefix = f"tw-ops-{uuid.uuid4().hex[:8]}:"
    async with FakeOpenAI(delay=1.5) as model, FakeSlack() as slack:
        svc = ServeProcess(_env(slack, model, redis_url, prefix))
        await svc.start()
        ch, ts = await _mention(svc, "slow question")
        for _ in range(100):  # wait until the model is working on it
            if model.chat_requests:
                break
            await asyncio.sleep(0.02)
        assert model.chat_requests
        code = await svc.stop(signal.SIGTERM)
        texts = slack.thread_texts(ch, ts)
    await delete_prefix(redis_url, prefix)
    assert code == 0, svc.output()
    assert texts == ["Echo: slow question"]
    assert "stopped" in svc.output()


async def test_startup_banner_names_routes_model_store_and_limits_without_secrets(redis_url):
    prefix = f"tw-ops-{uuid.uuid4().hex[:8]}:"
    async with FakeOpenAI() as model, FakeSlack() as slack:
        async with ServeProcess(_env(slack, model, redis_url, prefix)) as svc:
            await asyncio.sleep(0.2)
            out = svc.output()
    for expected in (
        "POST /slack/events",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "deployment 'gpt-4o'",
        "TOKEN_LIMIT 16384",
        "Redis (prefix",
    ):
        assert expected in out, out
    assert slack.token not in out and SECRETS["OPENAI_API_KEY"] not in out
    assert DEFAULT_SIGNING_SECRET not in out


async def test_a_turn_moves_metrics_and_logs_no_secret_and_no_message_text(redis_url):
    prefix = f"tw-ops-{uuid.uuid4().hex[:8]}:"
    async with FakeOpenAI() as model, FakeSlack() as slack:
        env = _env(slack, model, redis_url, prefix, LOG_LEVEL="INFO")
        async with ServeProcess(env) as svc:
            ch, ts = await _mention(svc, USER_TEXT)
            await slack.wait_for(lambda s: s.thread_texts(ch, ts), 20)
            await asyncio.sleep(0.3)
            async with aiohttp.ClientSession() as http:
                async with http.get(svc.url + "/metrics") as r:
                    metrics = await r.text()
        log = svc.output()
        secrets = [slack.token, DEFAULT_SIGNING_SECRET, SECRETS["OPENAI_API_KEY"]]
    await delete_prefix(redis_url, prefix)
    assert 'threadwise_replies_sent_total{platform="slack"} 1.0' in metrics
    assert re.search(
        r'threadwise_events_received_total\{kind="[a-z_]+",platform="slack"\}', metrics
    )
    assert "threadwise_model_latency_seconds_count 1.0" in metrics
    assert "threadwise_model_time_to_first_token_seconds_count 1.0" in metrics
    assert 'threadwise_model_tokens_total{kind="completion"}' in metrics
    assert "threadwise_lock_wait_seconds_count 1.0" in metrics
    for s in secrets:
        assert s not in log
    assert USER_TEXT not in log
    # every log line of the turn is JSON and carries the conversation id
    turn_lines = [
        json.loads(x) for x in log.splitlines() if x.startswith("{") and '"answered"' in x
    ]
    assert turn_lines and all(line.get("conversation") for line in turn_lines)


def _readme_settings() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        names = re.findall(r"`([A-Z0-9_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(" / ")] if " / " in cells[1] else [cells[1]]
        for i, name in enumerate(names):
            rows[name] = defaults[i] if i < len(defaults) else defaults[-1]
    return rows


def test_readme_configuration_table_matches_the_settings_class():
    rows = _readme_settings()
    fields = {}
    for info in Settings.model_fields.values():
        for alias in info.validation_alias.choices:
            fields[alias] = info.default
    documented = set(rows) | {"AZURE_CLIENT_ID"}  # documented in the key's row
    assert set(fields) - documented == set(), "settings missing from README"
    assert set(rows) - set(fields) == set(), "README names settings that do not exist"
    for name, shown in rows.items():
        default = fields[name]
        shown = shown.strip("`")
        if default is None or shown in ("—", "unset", "empty") or "unset" in shown:
            assert default in (None, ""), f"{name}: README says {shown!r}, default {default!r}"
        else:
            assert shown == str(default).replace("True", "true").replace("False", "false"), name


def test_manifests_and_azure_outputs_name_routes_the_server_serves():
    import yaml

    from adapters.slack.adapter import EVENTS_PATH

    manifest = yaml.safe_load((ROOT / "infra/slack/manifest.yaml").read_text())
    urls = [manifest["settings"]["event_subscriptions"]["request_url"]]
    urls += [c["url"] for c in manifest["features"].get("slash_commands", [])]
    assert all(u.endswith(EVENTS_PATH) for u in urls)
    bicep = (ROOT / "infra/azure/main.bicep").read_text()
    assert "/slack/events'" in bicep and "/api/messages'" in bicep
    teams = json.loads((ROOT / "infra/teams/manifest.json").read_text())
    assert teams["bots"] and set(teams["bots"][0]["scopes"]) == {"personal", "team", "groupChat"}
    # the server really serves those paths
    from aiohttp import web

    from adapters.teams import TeamsAdapter
    from bot.app import build_service
    from bot.metrics import Metrics

    svc = build_service(Settings(openai_base_url="http://x/v1/", azure_openai_deployment="d"))
    app = web.Application()
    TeamsAdapter(
        app_id=None,
        app_password=None,
        tenant_id=None,
        app_type="MultiTenant",
        allow_anonymous=True,
        handler=svc.responder,
        cache=svc.store,
        metrics=Metrics(),
    ).mount(app)
    paths = {r.resource.canonical for r in app.router.routes()}
    assert "/api/messages" in paths
    assert Path(EVENTS_PATH).as_posix() == "/slack/events"
