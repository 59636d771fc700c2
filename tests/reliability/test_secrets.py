"""Attack 12: secrets never reach a log line, and users never see internals.

A service configured with every secret it knows (model key, Slack bot token and signing secret,
Teams app password, a Redis password with URL-special characters) runs at LOG_LEVEL=DEBUG, in
JSON and in text format, through everything that makes it log: normal turns, a user pasting the
model key into a message, model 401/500/content filter, Slack API refusals, forged Slack and
Teams requests, an admin command, and Redis going away. No output line — at any level, in any
traceback — contains a secret, its URL-encoded form, or any 12-character piece of it. Start-up
failures (a wrong Slack app token, an invalid REDIS_URL) and `threadwise doctor` are checked the
same way. Everything the bot posted for people to read carries no internals (stack traces,
exception names, hosts, URLs, status codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import uuid
from urllib.parse import quote

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import Error, FakeOpenAI, prompt_content_filter, server_error
from tests.support.fakes.fake_slack import FakeSlack, event_callback, signed_headers
from tests.support.fakes.jwks import LocalIssuer
from tests.support.fixtures.teams.harness import APP_ID
from tests.support.helpers import ROOT, ServeProcess, base_env
from tests.support.stack import (
    HERE,
    SLACK_ADMIN,
    USERS,
    Stack,
    assert_no_internals,
    channel,
    figure,
    mention,
    slack_thread,
    teams_thread,
    teams_visible,
    ts,
)

pytestmark = [pytest.mark.security, pytest.mark.asyncio(loop_scope="module")]


def _secret(prefix: str) -> str:
    return prefix + secrets.token_hex(20)


OPENAI_KEY = _secret("sk-")
SLACK_TOKEN = _secret("xoxb-")
SIGNING_SECRET = _secret("")
APP_PASSWORD = _secret("Pw~")
APP_TOKEN = _secret("xapp-")
REDIS_PASSWORD = "p@ss:w/rd%" + secrets.token_hex(16)
SECRETS = {
    "OPENAI_API_KEY": OPENAI_KEY,
    "SLACK_BOT_TOKEN": SLACK_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "MICROSOFT_APP_PASSWORD": APP_PASSWORD,
    "SLACK_APP_TOKEN": APP_TOKEN,
    "REDIS password": REDIS_PASSWORD,
}


def leaks(text: str) -> list[str]:
    """The names of the secrets `text` shows, whole, URL-encoded or in any 12-character piece."""
    found = []
    for name, value in SECRETS.items():
        forms = {value, quote(value, safe="")}
        pieces = {value[i : i + 12] for i in range(len(value) - 11)}
        if any(f in text for f in forms) or any(p in text for p in pieces):
            found.append(name)
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world():
    async with (
        FakeOpenAI(api_key=OPENAI_KEY) as model,
        FakeSlack(token=SLACK_TOKEN, users=USERS) as slack,
        FakeConnector() as connector,
        LocalIssuer() as issuer,
    ):
        yield model, slack, connector, issuer


async def protect(server) -> str:
    """Give the test's Redis a password; the URL that reaches it."""
    r = aioredis.Redis.from_url(server.url)
    try:
        await r.config_set("requirepass", REDIS_PASSWORD)
    finally:
        await r.aclose()
    return f"redis://:{quote(REDIS_PASSWORD, safe='')}@127.0.0.1:{server.port}/0"


def signed(event: dict) -> tuple[str, dict]:
    body = json.dumps(event_callback(event))
    return body, signed_headers(body, SIGNING_SECRET)


@pytest.mark.parametrize("fmt", ["json", "text"])
async def test_no_secret_in_any_log_line_and_no_internals_for_users(world, redis_server, fmt):
    model, slack, connector, issuer = world
    model.reset()
    slack.reset()
    connector.reset()
    redis_url = await protect(redis_server)
    stack = Stack(model, slack, connector, redis_url, f"tw-secrets-{uuid.uuid4().hex[:6]}:")
    svc = await stack.start(
        OPENAI_API_KEY=OPENAI_KEY,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        TEAMS_ALLOW_ANONYMOUS="false",
        MICROSOFT_APP_ID=APP_ID,
        MICROSOFT_APP_PASSWORD=APP_PASSWORD,
        PYTHONPATH=f"{HERE / 'local_auth'}:{ROOT}",
        THREADWISE_TEST_JWKS_URL=issuer.jwks_url,
        THREADWISE_TEST_OUTGOING_TOKEN=issuer.outgoing_token(APP_ID),
        LOG_LEVEL="DEBUG",
        LOG_FORMAT=fmt,
    )
    try:
        threads: list[tuple[str, str]] = []

        async def ask(text: str, user: str = "U1", n: int = 1) -> list[str]:
            ch, at = channel(), ts()
            threads.append((ch, at))
            assert (
                await stack.slack_post(*signed(mention(f"<@UBOT> {text}", ch=ch, at=at, user=user)))
                == 200
            )
            return await slack_thread(slack, ch, at, n, quiet=0)

        assert (await ask("hello"))[0] == "Echo: hello"
        await ask(f"our key is {OPENAI_KEY} and the token {SLACK_TOKEN}")  # pasted by a user
        model.script(server_error())
        await ask("model 500")
        model.script(Error(401, {"error": {"code": "401", "message": f"bad key {OPENAI_KEY}"}}))
        await ask("model 401")
        model.script(prompt_content_filter())
        await ask("filtered")
        slack.fail("chat.startStream", error="invalid_auth")
        await ask("slack refuses streaming")
        await ask("!prompt set --global Secret-free prompt", user=SLACK_ADMIN)

        # Forgeries: a wrong signature, a Teams request without and with a bad token.
        body, headers = signed(mention("<@UBOT> forged", ch=channel()))
        headers["X-Slack-Signature"] = "v0=" + "0" * 64
        assert await stack.slack_post(body, headers) == 401
        act = stack.activity("personal_message", text="teams hello")
        assert await stack.teams(act, headers={"Authorization": "Bearer x.y.z"}) == 401
        good = issuer.token(aud=APP_ID, service_url=connector.url)
        assert await stack.teams(act, headers={"Authorization": f"Bearer {good}"}) == 200
        assert await teams_thread(connector, act["conversation"]["id"], 1, quiet=0) == [
            "Echo: teams hello"
        ]

        # Redis goes away: the apology, /readyz's reason, the logged errors.
        redis_server.stop()
        await ask("redis down")
        async with aiohttp.ClientSession() as http:
            async with http.get(svc.url + "/readyz") as r:
                assert r.status == 503
                reason = await r.text()
        assert not leaks(reason), reason
        figure("attacks tried (secrets)", 12)
    finally:
        await svc.stop()
        redis_server.start()  # the fixture stops it again

    assert len(svc.lines) > 40, "DEBUG logging produced suspiciously little"
    for line in svc.lines:
        assert not leaks(line), f"{leaks(line)} in a log line: {line[:300]}"

    shown = [m.text for m in slack.bot_messages()] + [
        a.text for a in teams_visible(connector, act["conversation"]["id"])
    ]
    for text in shown:
        if text.startswith("Echo: our key is"):
            continue  # the user's own message, echoed by the fake model
        assert not leaks(text), text
        if not text.startswith("Echo:"):
            assert_no_internals(text)


async def test_start_up_failures_and_doctor_print_no_secret(world):
    model, slack, _, _ = world
    runs = {
        "socket mode with a wrong app token": {
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_APP_TOKEN": APP_TOKEN,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        },
        "an invalid REDIS_URL holding a password": {
            "SLACK_BOT_TOKEN": SLACK_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "REDIS_URL": f"http://:{quote(REDIS_PASSWORD, safe='')}@127.0.0.1:1/0",
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": OPENAI_KEY,
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        },
    }
    for name, env in runs.items():
        svc = ServeProcess(env)
        with contextlib.suppress(RuntimeError):  # it is expected not to become healthy
            svc.ready_timeout = 8
            await svc.start()
        await svc.stop()
        assert svc.proc.returncode != 0, f"{name}: the service started"
        assert not leaks(svc.output()), f"{name}: {svc.output()[-500:]}"
        figure("attacks tried (secrets)")

    doctor_env = base_env(
        SLACK_BOT_TOKEN=SLACK_TOKEN,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=slack.api_url,
        OPENAI_BASE_URL=model.base_url,
        OPENAI_API_KEY="sk-wrong-" + OPENAI_KEY[-30:],
        AZURE_OPENAI_DEPLOYMENT="gpt-4o",
        REDIS_URL=f"redis://:{quote(REDIS_PASSWORD, safe='')}@127.0.0.1:1/0",
        LOG_LEVEL="DEBUG",
    )
    SECRETS["wrong key"] = doctor_env["OPENAI_API_KEY"]
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "bot", "doctor"],
            env=doctor_env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(HERE),
        )
    finally:
        del SECRETS["wrong key"]
    out = done.stdout + done.stderr
    assert "redis" in out.lower() and "model" in out.lower(), out
    assert not leaks(out), out
    figure("attacks tried (secrets)")
