"""The stack itself: the fakes, a Redis prefix, and the `threadwise serve` processes running
against them, with senders (signed Slack events, Teams activities) and readers of what the bot
kept in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bot.store import decode_message
from tests.support.fakes.fake_connector import FakeConnector
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import FakeSlack, event_callback, signed_headers
from tests.support.fixtures.teams.harness import APP_ID, load
from tests.support.helpers import ROOT, ServeProcess, delete_prefix
from tests.support.stack.world import SECRET, SLACK_ADMIN, TEAMS_ADMIN, serial

HERE = Path(__file__).resolve().parents[1]  # tests/support

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
        act["id"] = f"{1_900_000_000_000 + serial()}"
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
        return dict(act, id=f"{1_900_000_000_000 + serial()}", text=text)

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
