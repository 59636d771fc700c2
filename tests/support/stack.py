"""What the reliability and security tests share: the stack they run, senders, readers, checks.

A `Stack` is the service under test as people meet it: `threadwise serve` in a subprocess (real
Redis, both platforms: Slack over HTTP and Teams with an app id, its tokens checked against the
key set the fake connector serves, see local_auth/sitecustomize.py) with the local fakes as its
world — `FakeOpenAI` as Azure OpenAI, `FakeSlack` as Slack's Web API, `FakeConnector` as the Bot
Framework connector. Tests drive it with signed Slack events and Teams activities and read what a
person would see (the bot's messages at the fakes) and what the bot kept (its Redis keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bot.store import decode_message
from tests.support.fakes.fake_connector import FakeConnector, Recorded, opens_stream
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    Message,
    event_callback,
    signed_headers,
)
from tests.support.fixtures.teams.harness import APP_ID, TENANT, load
from tests.support.helpers import ROOT, ServeProcess, delete_prefix

HERE = Path(__file__).resolve().parent

SECRET = DEFAULT_SIGNING_SECRET
TEAM = "T0FAKE"  # the fake Slack workspace
SLACK_ADMIN = "UADMIN"
USERS = {
    SLACK_ADMIN: "Ada Admin",
    "U1": "Ann",
    "U2": "Bob Member",
    "U3": {"display_name": "", "real_name": "Cy Tab"},
}
TEAMS_ADMIN = "6a1c5f0e-7b2d-4c3e-9f8a-1b2c3d4e5f60"  # Megan, the fixtures' 1:1 sender
TEAMS_MEMBER = "0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a0f9"  # Adele, the group chat's sender

# What the figures in the closing note count; tests add to it, the terminal summary prints it.
FIGURES: Counter[str] = Counter()


def figure(kind: str, n: int = 1) -> None:
    FIGURES[kind] += n


# -- ids ---------------------------------------------------------------------------------------

_seq = itertools.count(1)


def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def dm() -> str:
    return "D" + uuid.uuid4().hex[:9].upper()


def ts() -> str:
    """A fresh, increasing Slack ts."""
    return f"{int(time.time())}.{next(_seq):06d}"


def slack_key(ch: str, thread: str | None) -> str:
    return f"slack:{TEAM}:{ch}" + (f":{thread}" if thread else "")


def teams_key(activity: dict) -> str:
    return f"teams:{TENANT}:{activity['conversation']['id']}"


# -- events ------------------------------------------------------------------------------------


def mention(
    text: str,
    *,
    ch: str,
    at: str | None = None,
    thread: str | None = None,
    user: str = "U1",
    **extra: Any,
) -> dict:
    """An `app_mention` as Slack sends it (`text` should carry `<@UBOT>`)."""
    at = at or ts()
    event = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": at,
        "team": TEAM,
        "channel": ch,
        "event_ts": at,
    }
    if thread:
        event["thread_ts"] = thread
    event.update(extra)
    return event


def message(
    text: str,
    *,
    ch: str,
    at: str | None = None,
    thread: str | None = None,
    user: str | None = "U1",
    channel_type: str = "channel",
    **extra: Any,
) -> dict:
    """A `message` event (channel, thread reply or DM) as Slack sends it."""
    at = at or ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": at,
        "team": TEAM,
        "channel": ch,
        "event_ts": at,
        "channel_type": channel_type,
    }
    if user is not None:
        event["user"] = user
    if thread:
        event["thread_ts"] = thread
    event.update(extra)
    return event


# -- reading what people see -------------------------------------------------------------------


def slack_finished(slack: FakeSlack, ch: str, thread: str | None) -> list[Message]:
    """The bot's finished (not still streaming) messages in a thread, oldest first."""
    return [m for m in slack.thread(ch, thread) if not m.streaming]


async def slack_thread(
    slack: FakeSlack,
    ch: str,
    thread: str | None,
    n: int = 1,
    timeout: float = 20.0,
    quiet: float = 0.3,
) -> list[str]:
    """The thread's texts once it holds `n` finished bot messages and Slack has gone quiet."""
    await slack.wait_for(lambda s: len(slack_finished(s, ch, thread)) >= n, timeout)
    if quiet:
        await slack.settle(quiet)
    return [m.text for m in slack_finished(slack, ch, thread)]


def teams_visible(connector: FakeConnector, conversation_id: str) -> list[Recorded]:
    """What a Teams user sees: plain messages and final stream messages, in order."""
    return [
        a
        for a in connector.activities
        if a.conversation_id == conversation_id
        and a.type == "message"
        and (a.stream is None or a.stream.get("streamType") == "final")
    ]


def teams_shown(connector: FakeConnector, conversation_id: str) -> str:
    """Everything a Teams user has been shown of the bot's replies, as one text.

    A stream that was cut short shows its last accepted chunk; what follows it is posted as
    ordinary messages.
    """
    parts: list[str] = []
    stream_text: dict[str, str] = {}
    for a in connector.activities:
        if a.conversation_id != conversation_id:
            continue
        info = a.stream
        if info is None:
            if a.type == "message":
                parts.append(a.text)
            continue
        kind = info.get("streamType")
        if opens_stream(info):
            # The model's first words, or informative text (a progress bar, not the reply).
            stream_text[a.id] = a.text if kind == "streaming" else ""
            parts.append(f"\x00stream:{a.id}")
        elif kind in ("streaming", "final"):
            stream_text[info.get("streamId") or a.id] = a.text
    out = []
    for p in parts:
        if p.startswith("\x00stream:"):
            shown = stream_text.get(p.split(":", 1)[1], "")
            if shown:
                out.append(shown)
        else:
            out.append(p)
    return "\n\n".join(out)


async def teams_thread(
    connector: FakeConnector,
    conversation_id: str,
    n: int = 1,
    timeout: float = 20.0,
    quiet: float = 0.3,
) -> list[str]:
    """The conversation's visible bot messages once there are `n` (then a quiet moment)."""
    await connector.wait_for(lambda _: len(teams_visible(connector, conversation_id)) >= n, timeout)
    if quiet:
        await asyncio.sleep(quiet)
    return [a.text for a in teams_visible(connector, conversation_id)]


# -- what the bot user sees must never show internals ------------------------------------------

INTERNALS = re.compile(
    r"Traceback|Exception|\w+Error\b|File \"|\.py\b|redis|127\.0\.0\.1|localhost|https?://"
    r"|HTTP \d{3}|status (?:code )?\d{3}|openai\.|aiohttp|httpx|errno|stack trace",
    re.IGNORECASE,
)


def assert_no_internals(text: str) -> None:
    found = INTERNALS.search(text)
    assert found is None, f"user-facing text shows internals ({found.group(0)!r}): {text!r}"


# -- the stack ---------------------------------------------------------------------------------


def model_env(model: FakeOpenAI) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
    }


@dataclass
class Stack:
    """The fakes, a Redis prefix, and the `threadwise serve` processes running against them."""

    model: FakeOpenAI
    slack: FakeSlack
    connector: FakeConnector
    redis_url: str
    prefix: str
    env_extra: dict[str, str] = field(default_factory=dict)
    services: list[ServeProcess] = field(default_factory=list)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **model_env(self.model),
            "SLACK_BOT_TOKEN": self.slack.token,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": self.slack.api_url,
            # Anonymous Teams is refused next to Slack: Teams checks real tokens here.
            "MICROSOFT_APP_ID": APP_ID,
            "MICROSOFT_APP_PASSWORD": "app-password-for-tests-only",
            "PYTHONPATH": f"{HERE / 'local_auth'}:{ROOT}",
            "THREADWISE_TEST_JWKS_URL": self.connector.issuer.jwks_url,
            "THREADWISE_TEST_OUTGOING_TOKEN": self.connector.issuer.outgoing_token(APP_ID),
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "BOT_ADMINS": f"slack:{SLACK_ADMIN},teams:{TEAMS_ADMIN}",
            "TOKEN_LIMIT": "128000",
            "MAX_RESPONSE_TOKENS": "4000",
            "LLM_MAX_RETRIES": "0",
            "LOG_LEVEL": "INFO",
        }
        env.update(self.env_extra)
        env.update(extra)
        return env

    async def start(self, *args: str, **extra: str) -> ServeProcess:
        """One more `threadwise serve [args]` with the stack's settings (plus `extra`)."""
        svc = await ServeProcess(self.env(**extra), args=args).start()
        self.services.append(svc)
        return svc

    @property
    def svc(self) -> ServeProcess:
        return self.services[0]

    async def close(self) -> None:
        """Stop every service (each one even if stopping another failed), then the keys."""
        try:
            for svc in self.services:
                with contextlib.suppress(Exception):
                    await svc.stop()
        finally:
            with contextlib.suppress(Exception):  # a test's own Redis may be down by now
                await delete_prefix(self.redis_url, self.prefix, cluster=self.on_cluster)

    def reset(self) -> None:
        self.model.reset()
        self.model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)
        self.slack.reset()
        self.connector.reset()

    # -- Slack

    async def slack_post(
        self, body: str | bytes, headers: dict[str, str], svc: ServeProcess | None = None
    ) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                (svc or self.svc).url + "/slack/events", data=body, headers=headers
            ) as r:
                await r.read()
                return r.status

    async def send(
        self,
        event: dict,
        *,
        svc: ServeProcess | None = None,
        event_id: str | None = None,
        retry_num: int | None = None,
    ) -> int:
        body = json.dumps(event_callback(event, event_id=event_id))
        return await self.slack_post(body, signed_headers(body, SECRET, retry_num=retry_num), svc)

    # -- Teams

    def activity(self, name: str = "personal_message", *, text: str | None = None, **changes):
        """A fixture activity with a fresh id and (unless given) a fresh conversation id."""
        act = load(name, service_url=self.connector.url, **changes)
        act["id"] = f"{1_900_000_000_000 + next(_seq)}"
        if "conversation" not in changes:
            conv = act["conversation"]
            if conv.get("conversationType") == "channel":
                conv["id"] = f"{conv['id'].split(';')[0]};messageid={act['id']}"
            else:
                conv["id"] = f"{conv['id'][:40]}-{uuid.uuid4().hex[:8]}"
        if text is not None:
            act["text"] = text
        return act

    def follow_up(self, act: dict, text: str) -> dict:
        return dict(act, id=f"{1_900_000_000_000 + next(_seq)}", text=text)

    async def teams(
        self, act: dict | bytes, *, svc: ServeProcess | None = None, headers=None
    ) -> int:
        """POST an activity; with a Bot Framework token for the connector unless `headers`."""
        if headers is None:
            headers = {"Authorization": self.connector.authorization(APP_ID)}
        async with aiohttp.ClientSession() as http:
            kwargs: dict[str, Any] = {"headers": headers}
            if isinstance(act, bytes):
                kwargs["data"] = act
            else:
                kwargs["json"] = act
            async with http.post((svc or self.svc).url + "/api/messages", **kwargs) as r:
                await r.read()
                return r.status

    # -- what the bot kept

    @property
    def on_cluster(self) -> bool:
        return self.env().get("REDIS_CLUSTER") == "true"

    def redis(self):
        """A client for the stack's Redis: a cluster client when it runs on a Redis Cluster."""
        if self.on_cluster:
            return aioredis.RedisCluster.from_url(self.redis_url, decode_responses=True)
        return aioredis.Redis.from_url(self.redis_url, decode_responses=True)

    async def stored(self, conversation: str) -> list[tuple[str, str]]:
        """The conversation's history in Redis as (role, content), oldest first."""
        r = self.redis()
        try:
            raw = await r.lrange(f"{self.prefix}{{{conversation}}}:h", 0, -1)
        finally:
            await r.aclose()
        return [(m.role, m.content) for m in map(decode_message, raw)]

    async def stored_when(
        self, conversation: str, n: int, timeout: float = 10.0
    ) -> list[tuple[str, str]]:
        """The history once it holds `n` messages (a turn is stored just after it is posted)."""
        deadline = time.monotonic() + timeout
        while len(history := await self.stored(conversation)) < n:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        return history

    async def model_requests_when(self, n: int, timeout: float = 20.0) -> None:
        """Wait until the model has had `n` chat requests."""
        deadline = time.monotonic() + timeout
        while len(self.model.chat_requests) < n:
            assert time.monotonic() < deadline, f"{len(self.model.chat_requests)} of {n} requests"
            await asyncio.sleep(0.05)

    async def prompts(self) -> dict[str, str]:
        """Every stored system prompt by scope, and the length of every audit list."""
        r = aioredis.Redis.from_url(self.redis_url, decode_responses=True)
        out: dict[str, str] = {}
        try:
            async for key in r.scan_iter(match=f"{self.prefix}{{prompts}}:*", count=500):
                kind = await r.type(key)
                if kind == "list":
                    out[key] = f"<audit of {await r.llen(key)}>"
                elif kind == "set":  # the audited scopes (data requests find audits by it)
                    out[key] = f"<set of {await r.scard(key)}>"
                else:
                    out[key] = await r.get(key)
        finally:
            await r.aclose()
        return out


def log_records(svc: ServeProcess) -> list[dict]:
    """The service's JSON log lines (the start-up banner and other plain lines are skipped)."""
    out = []
    for line in svc.lines:
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def rss_bytes(svc: ServeProcess) -> int:
    """Resident memory of the service process."""
    assert svc.proc is not None
    with open(f"/proc/{svc.proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def metric(svc: ServeProcess, name: str, **labels: str) -> float:
    """One sample of the service's /metrics (0 when absent)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(svc.url + "/metrics") as r:
            text = await r.text()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_text = head.partition("{")
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()) or not want:
            total += float(value)
    return total
