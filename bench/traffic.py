"""Load for a running stack: signed Slack events and Teams activities, sent at a steady pace."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from bench.stack import Stack
from bench.tags import next_number
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    app_mention,
    event_callback,
    message,
    signed_headers,
)
from tests.support.fixtures.teams.harness import APP_ID
from tests.support.fixtures.teams.harness import load as load_activity


def channel_id() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


async def post_slack(st: Stack, event: dict, *, event_id: str | None = None) -> float:
    """POST one signed Events API request; returns the acknowledgement latency (s)."""
    body = json.dumps(event_callback(event, event_id=event_id))
    headers = signed_headers(body, DEFAULT_SIGNING_SECRET)
    t0 = time.monotonic()
    async with st.http.post(st.svc.url + "/slack/events", data=body, headers=headers) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"/slack/events answered {r.status}")
    return time.monotonic() - t0


def mention(text: str, *, user: str, channel: str, ts: str, thread_ts: str | None = None):
    return app_mention(f"<@UBOT> {text}", user=user, channel=channel, ts=ts, thread_ts=thread_ts)


def followup(text: str, *, user: str, channel: str, ts: str, thread_ts: str):
    return message(text, user=user, channel=channel, ts=ts, thread_ts=thread_ts)


def teams_activity(st: Stack, text: str, conversation_id: str | None = None) -> dict:
    act = load_activity("personal_message", service_url=st.teams.url)
    act["id"] = str(1_800_000_000_000 + next_number())
    act["text"] = text
    act.pop("attachments", None)
    conv = act["conversation"]
    conv["id"] = conversation_id or f"a:bench-{uuid.uuid4().hex}"
    return act


async def post_teams(st: Stack, act: dict) -> float:
    headers = {"Authorization": st.teams.authorization(APP_ID)}  # minted once, then cached
    t0 = time.monotonic()
    async with st.http.post(st.svc.url + "/api/messages", json=act, headers=headers) as r:
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"/api/messages answered {r.status}")
    return time.monotonic() - t0


async def paced(rate: float, n: int, fn) -> None:
    """Start `fn(i)` for i in range(n) at a steady `rate` per second (open loop); wait all."""
    tasks = []
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fn(i)))
    await asyncio.gather(*tasks)
