"""Fixtures of the fake model's own tests: a started FakeOpenAI and a real SDK client on it."""

from __future__ import annotations

import openai
import pytest

from tests.support.fakes.fake_openai import FakeOpenAI


@pytest.fixture
async def fake():
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake):
    async with openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as c:
        yield c
