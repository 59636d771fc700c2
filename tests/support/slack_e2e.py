"""Senders and readers of the Slack end-to-end tests: fresh channels, signed Events API posts to a
running `threadwise serve`, and the bot's finished replies in a thread."""

from __future__ import annotations

import json
import time
import uuid

import aiohttp

from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    event_callback,
    signed_headers,
)
from tests.support.helpers import ServeProcess

SECRET = DEFAULT_SIGNING_SECRET
ADMIN = "U1"


def service_env(slack: FakeSlack, model, redis_url: str, prefix: str, **extra: str) -> dict:
    """`threadwise serve`'s settings for a Slack end-to-end module: the fakes, Redis under
    `prefix`, U1 an admin, no model retries; `extra` adds or overrides settings."""
    return {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "BOT_ADMINS": f"slack:{ADMIN}",
        "LLM_MAX_RETRIES": "0",
        **extra,
    }


def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def dm() -> str:
    return "D" + uuid.uuid4().hex[:9].upper()


async def post(svc: ServeProcess, body: str | bytes, headers: dict[str, str]) -> tuple[int, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.post(svc.url + "/slack/events", data=body, headers=headers) as r:
            await r.read()
            return r.status, time.monotonic() - started


async def send(svc: ServeProcess, event: dict, *, event_id=None, retry_num=None) -> int:
    body = json.dumps(event_callback(event, event_id=event_id))
    status, _ = await post(svc, body, signed_headers(body, SECRET, retry_num=retry_num))
    return status


async def replies(slack: FakeSlack, ch: str, thread: str | None, n: int = 1, timeout=20.0):
    """The bot's finished messages in a thread, once there are `n` (and nothing else moves)."""
    await slack.wait_for(
        lambda s: len([m for m in s.thread(ch, thread) if not m.streaming]) >= n, timeout
    )
    await slack.settle(0.3)
    return slack.thread_texts(ch, thread)
