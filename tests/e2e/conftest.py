"""The Slack end-to-end service (test_slack_conversations, _requests, _replies).

The service runs as a subprocess with real Redis, the fake Azure OpenAI server as its model
and `FakeSlack` as its Slack Web API (SLACK_API_URL). Each test uses fresh channels and
timestamps, so one service serves a whole module. A module that defines its own `model`,
`slack`, `service` or `fresh` fixture uses that one instead.
"""

from __future__ import annotations

import uuid

import pytest_asyncio

from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import FakeSlack
from tests.support.helpers import ServeProcess, delete_prefix
from tests.support.slack_e2e import service_env


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack():
    users = {"U1": "Ann Admin", "U2": {"display_name": "", "real_name": "Bob Stone"}}
    async with FakeSlack(users=users) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, slack):
    prefix = f"tw-slack-e2e-{uuid.uuid4().hex[:8]}:"
    env = service_env(
        slack, model, redis_url, prefix, TOKEN_LIMIT="128000", MAX_RESPONSE_TOKENS="60000"
    )
    async with ServeProcess(env) as svc:
        yield svc
    await delete_prefix(redis_url, prefix)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, slack):
    model.reset()
    model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)
    slack.reset()
    yield
    model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)
