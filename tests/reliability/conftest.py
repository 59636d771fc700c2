"""Fixtures of the reliability and security suite: module-wide fakes, running stacks, fuzz world."""

from __future__ import annotations

import uuid

import pytest
import pytest_asyncio

from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import FakeSlack
from tests.support.fuzz_harness import World
from tests.support.stack import FIGURES, USERS, Stack, figure


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack():
    async with FakeSlack(users=USERS) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def connector():
    async with FakeConnector() as fake:
        yield fake


def new_stack(model, slack, connector, redis_url: str, **env: str) -> Stack:
    prefix = f"tw-rel-{uuid.uuid4().hex[:8]}:"
    return Stack(model, slack, connector, redis_url, prefix, env_extra=dict(env))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(model, slack, connector, redis_url):
    """A running `threadwise serve` with default settings; a module may override it."""
    st = new_stack(model, slack, connector, redis_url)
    await st.start()
    yield st
    await st.close()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(stack):
    stack.reset()
    yield stack
    stack.reset()


@pytest.fixture(scope="module")
def world(redis_url):
    """The fuzz tests' service and fakes on a background loop (`World`), one per test module."""
    w = World(redis_url).start()
    try:
        yield w
        figure("requests fuzzed", w.sent)
    finally:
        w.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not FIGURES:
        return
    terminalreporter.write_sep("-", "reliability and security figures")
    for kind, n in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{kind:<40} {n}")
