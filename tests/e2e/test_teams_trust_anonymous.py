"""Anonymous Teams (TEAMS_ALLOW_ANONYMOUS, no app id) is for a local test client only.

Nothing authenticates a request in that mode, so `threadwise serve` refuses it unless it listens
on a loopback address and serves nothing else (no Slack); the bot posts only to loopback service
URLs (it never sends anything to another machine on a stranger's say-so); and no sender is an
admin, whatever `aadObjectId` it claims. Each through a real `threadwise serve` (the rules
themselves, host by host, are in tests/unit/test_teams_trust_rules.py).
"""

from __future__ import annotations

import asyncio
import sys
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fixtures.teams.harness import load
from tests.support.helpers import ServeProcess, base_env, delete_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

ADMIN_AAD = "6a1c5f0e-7b2d-4c3e-9f8a-1b2c3d4e5f60"  # Megan, the fixtures' 1:1 sender


def model_env(model: FakeOpenAI) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def connector():
    async with FakeConnector() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, connector):
    prefix = f"tw-teams-anon-{uuid.uuid4().hex[:8]}:"
    env = {
        **model_env(model),
        "TEAMS_ALLOW_ANONYMOUS": "true",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "BOT_ADMINS": f"teams:{ADMIN_AAD}",
        "LLM_MAX_RETRIES": "0",
    }
    async with ServeProcess(env) as svc:
        yield svc
    await delete_prefix(redis_url, prefix)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, connector):
    model.reset()
    connector.reset()
    yield
    model.reset()


def activity(name: str, connector: FakeConnector, text: str | None = None) -> dict:
    act = load(name, service_url=connector.url)
    act["id"] = str(uuid.uuid4().int % 10**13)
    act["conversation"]["id"] = f"{act['conversation']['id'][:40]}-{uuid.uuid4().hex[:8]}"
    if text is not None:
        act["text"] = text
    return act


async def post(svc: ServeProcess, act: dict) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(svc.url + "/api/messages", json=act) as resp:
            return resp.status


async def serve_exits(env: dict[str, str]) -> tuple[int, str]:
    """Run `threadwise serve` expecting it to refuse to start: (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env=base_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode, err.decode()


# -- start-up ------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "bot.example.com"])
async def test_serve_refuses_anonymous_mode_unless_bound_to_loopback(model, host):
    code, err = await serve_exits(
        {**model_env(model), "TEAMS_ALLOW_ANONYMOUS": "true", "HOST": host}
    )
    assert code == 2, err
    [line] = err.strip().splitlines()
    assert line.startswith("threadwise: TEAMS_ALLOW_ANONYMOUS: needs HOST on a loopback address")
    assert repr(host) in line


async def test_serve_refuses_anonymous_mode_together_with_slack(model):
    env = {
        **model_env(model),
        "TEAMS_ALLOW_ANONYMOUS": "true",
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": "not-a-real-signing-secret",
    }
    code, err = await serve_exits(env)
    assert code == 2, err
    [line] = err.strip().splitlines()
    assert line.startswith("threadwise: TEAMS_ALLOW_ANONYMOUS: refused together with Slack")
    assert "xoxb-test-token" not in err


# -- requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["https://smba.trafficmanager.net/amer/", "https://attacker.example/", "http://10.0.0.7:80/"],
)
@pytest.mark.parametrize("kind", ["personal_message", "conversation_update_bot_added"])
async def test_anonymous_mode_refuses_a_service_url_off_this_machine(
    service, model, connector, fresh, url, kind
):
    act = activity(kind, connector, text="hello" if kind == "personal_message" else None)
    act["serviceUrl"] = url
    assert await post(service, act) == 403
    await asyncio.sleep(0.3)
    assert connector.activities == [] and model.chat_requests == []
    assert not [ln for ln in service.lines if "not delivered" in ln]


async def test_anonymous_sender_is_never_an_admin(service, model, connector, fresh):
    act = activity("personal_message", connector, "!prompt set --global Talk like a pirate.")
    assert act["from"]["aadObjectId"] == ADMIN_AAD  # the id BOT_ADMINS lists
    assert await post(service, act) == 200
    await connector.wait_for(lambda acts: any(a.type == "message" for a in acts), 20)
    [refused] = connector.messages(act["conversation"]["id"])
    assert "only admins" in refused.text
    show = dict(act, id=str(uuid.uuid4().int % 10**13), text="!prompt")
    assert await post(service, show) == 200
    await connector.wait_for(lambda acts: len([a for a in acts if a.type == "message"]) >= 2, 20)
    assert "pirate" not in connector.messages(act["conversation"]["id"])[-1].text
    assert model.chat_requests == []
