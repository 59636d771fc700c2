"""What the end-to-end benches share: recording fakes, a `threadwise serve` subprocess, load.

The service always runs as a real `threadwise serve` subprocess (the command operators run)
against real Redis under a private key prefix that is deleted afterwards. The fakes run in the
bench process, so every timestamp below is `time.monotonic()` — one clock for the load
generator, the fake model, the fake Slack Web API and the fake Teams connector (CLOCK_MONOTONIC
is system-wide on Linux, so the subprocess shares it too).

- `ModelClock` (a `FakeOpenAI`) records, per chat request, when it arrived and when its last
  byte was written, keyed by the tag (`[m123]`) in the last user message. "Minus the model's own
  time" subtracts exactly that interval: arrival → end of the response, as the fake saw it.
- `SlackRecorder` (a `FakeSlack`) records, per thread, when the first streamed text arrived
  (`chat.startStream`/`chat.appendStream` with text, or `chat.postMessage`) and when the reply
  was complete (`chat.stopStream`, or `chat.postMessage` when not streaming).
- `TeamsRecorder` (a `FakeConnector`) records, per conversation, the first text the user can see
  (a streaming update with text, or a message) and the final message.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import REDIS_URL
from tests.support.fakes.fake_connector import FakeConnector, opens_stream, stream_info
from tests.support.fakes.fake_openai import FakeOpenAI, _last_user_text
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    app_mention,
    event_callback,
    message,
    signed_headers,
)
from tests.support.fixtures.teams.harness import APP_ID
from tests.support.fixtures.teams.harness import load as load_activity
from tests.support.helpers import ROOT, ServeProcess, delete_prefix

LOCAL_AUTH = ROOT / "tests" / "support" / "local_auth"  # local Bot Framework keys

SENDER_CONNECTIONS = 256
TAG = re.compile(r"\[m(\d+)\]")
_seq = itertools.count(1)


def next_tag() -> str:
    return f"[m{next(_seq)}]"


def tag_of(text: str) -> str | None:
    m = TAG.search(text or "")
    return m.group(0) if m else None


# ------------------------------------------------------------------------------------ fakes


@dataclass
class ModelCall:
    started: float
    first_token: float | None = None
    ended: float | None = None


class ModelClock(FakeOpenAI):
    """FakeOpenAI that remembers when each tagged request started and ended."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.calls: dict[str, ModelCall] = {}
        self.keep_requests = False

    async def _record(self, request):  # type: ignore[override]
        recorded = await super()._record(request)
        request["bench_recorded"] = recorded
        if not self.keep_requests:
            self.requests.clear()  # a long run must not grow the bench process
        return recorded

    async def _chat(self, request):  # type: ignore[override]
        started = time.monotonic()
        resp = await super()._chat(request)
        ended = time.monotonic()
        recorded = request.get("bench_recorded")
        msgs = recorded.messages if recorded is not None else None
        if msgs:
            tag = tag_of(_last_user_text(msgs))
            if tag:
                first = started + self.delay + self.first_token_delay
                self.calls[tag] = ModelCall(started, first_token=first, ended=ended)
        return resp


@dataclass
class Reply:
    first_text: float | None = None
    done: float | None = None
    streams: int = 0
    posts: int = 0
    last_stream_post: float | None = None  # Teams: the last update of an open stream


class SlackRecorder(FakeSlack):
    """FakeSlack that timestamps the first visible text and the end of each thread's reply."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.replies: dict[tuple[str, str | None], Reply] = defaultdict(Reply)
        self.waiters: dict[tuple[str, str | None], asyncio.Future] = {}
        self.keep_calls = False
        self.method_counts: dict[str, int] = defaultdict(int)  # every Web API call, by method

    async def _api(self, request):  # type: ignore[override]
        self.method_counts[request.match_info["method"]] += 1
        return await super()._api(request)

    def _thread_key(self, params: dict) -> tuple[str, str | None]:
        m = self.state.messages.get((params.get("channel"), params.get("ts")))
        return (m.channel, m.thread_ts) if m else (params.get("channel", ""), None)

    def _saw_text(self, key, text: str) -> None:
        r = self.replies[key]
        if text and r.first_text is None:
            r.first_text = time.monotonic()

    def _done(self, key) -> None:
        r = self.replies[key]
        r.done = time.monotonic()
        fut = self.waiters.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(r.done)

    def _trim(self) -> None:
        if not self.keep_calls:
            self.state.calls.clear()

    def _m_chat_startStream(self, params):  # type: ignore[override]
        out = super()._m_chat_startStream(params)
        key = (params["channel"], params["thread_ts"])
        self.replies[key].streams += 1
        self._saw_text(key, self._chunk_text(params))
        self._trim()
        return out

    def _m_chat_appendStream(self, params):  # type: ignore[override]
        out = super()._m_chat_appendStream(params)
        self._saw_text(self._thread_key(params), self._chunk_text(params))
        self._trim()
        return out

    def _m_chat_stopStream(self, params):  # type: ignore[override]
        out = super()._m_chat_stopStream(params)
        key = self._thread_key(params)
        self._saw_text(key, self._chunk_text(params))
        self._done(key)
        self._trim()
        return out

    def _m_chat_postMessage(self, params):  # type: ignore[override]
        out = super()._m_chat_postMessage(params)
        key = (params["channel"], params.get("thread_ts") or None)
        self.replies[key].posts += 1
        self._saw_text(key, params.get("markdown_text") or params.get("text") or "")
        self._done(key)
        self._trim()
        return out

    def wait(self, key: tuple[str, str | None]) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        r = self.replies.get(key)
        if r is not None and r.done is not None:
            fut.set_result(r.done)
        else:
            self.waiters[key] = fut
        return fut

    def reply_tags(self) -> dict[str, int]:
        """How many finished bot messages carry each tag (the fake model echoes the tag)."""
        counts: dict[str, int] = defaultdict(int)
        for m in self.state.messages.values():
            if not m.deleted and not m.streaming:
                for t in set(TAG.findall(m.text)):
                    counts[f"[m{t}]"] += 1
        return counts


class TeamsRecorder(FakeConnector):
    """FakeConnector that timestamps the first visible text and the final message."""

    def __init__(self) -> None:
        super().__init__()
        self.replies: dict[str, Reply] = defaultdict(Reply)
        self.waiters: dict[str, asyncio.Future] = {}
        self.keep_activities = False

    def _accept(self, request, conversation_id, reply_to_id, activity):  # type: ignore[override]
        resp = super()._accept(request, conversation_id, reply_to_id, activity)
        if resp.status >= 300:
            return resp
        now = time.monotonic()
        r = self.replies[conversation_id]
        info = stream_info(activity) or {}
        kind = info.get("streamType")
        text = activity.get("text") or ""
        visible = activity.get("type") == "message" or kind == "streaming"
        if visible and text and r.first_text is None:
            r.first_text = now
        if opens_stream(info):
            r.streams += 1
        if kind in ("informative", "streaming"):
            r.last_stream_post = now
        if activity.get("type") == "message":
            r.posts += 1
            r.done = now
            fut = self.waiters.pop(conversation_id, None)
            if fut is not None and not fut.done():
                fut.set_result(now)
        if not self.keep_activities:
            self.activities.clear()
            if kind == "final":
                self._streams.pop(info.get("streamId"), None)
        return resp

    def wait(self, conversation_id: str) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        r = self.replies.get(conversation_id)
        if r is not None and r.done is not None:
            fut.set_result(r.done)
        else:
            self.waiters[conversation_id] = fut
        return fut


# ------------------------------------------------------------------------------------ service


@dataclass
class Stack:
    """A running `threadwise serve` with its fakes, and an HTTP session to talk to it."""

    model: ModelClock
    slack: SlackRecorder
    teams: TeamsRecorder
    svc: ServeProcess
    http: aiohttp.ClientSession
    prefix: str
    redis_url: str
    users: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        assert self.svc.proc is not None
        return self.svc.proc.pid

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def event_loop(self) -> str:
        maps = Path(f"/proc/{self.pid}/maps").read_text()
        return "uvloop" if "uvloop" in maps else "asyncio"

    def log_problems(self) -> dict[str, int]:
        """Warnings and errors the service logged, counted by message."""
        counts: dict[str, int] = defaultdict(int)
        for line in self.svc.lines:
            try:
                rec = json.loads(line)
            except ValueError:
                if "Traceback" in line or "Error" in line:
                    counts[line[:100]] += 1
                continue
            if isinstance(rec, dict) and rec.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                counts[f"{rec.get('level')}: {str(rec.get('msg'))[:100]}"] += 1
        return dict(counts)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class cpu_meter:
    """CPU used by the service, the bench process and everything else over a `with` block.

    "other" is every other process on the machine (Redis included): on a shared 2-core machine
    it says how much of the CPU the service had to share.
    """

    def __init__(self, st: Stack) -> None:
        self.st = st

    def __enter__(self) -> cpu_meter:
        self.wall0 = time.monotonic()
        self.svc0 = cpu_seconds(self.st.pid)
        self.bench0 = time.process_time()
        self.sys0 = system_busy_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.monotonic() - self.wall0
        self.svc = cpu_seconds(self.st.pid) - self.svc0
        self.bench = time.process_time() - self.bench0
        self.total = system_busy_seconds() - self.sys0

    def per(self, n: int) -> dict[str, float]:
        return {
            "wall_s": round(self.wall, 2),
            "service_cpu_s": round(self.svc, 2),
            "service_cpu_ms_per_msg": round(self.svc / max(n, 1) * 1000, 2),
            "service_cpu_util": round(self.svc / self.wall, 2),
            "bench_cpu_util": round(self.bench / self.wall, 2),
            "other_cpu_util": round(max(0.0, self.total - self.svc - self.bench) / self.wall, 2),
        }


class running_stack:
    """`async with running_stack(...) as st:` — fakes, serve, cleanup of the Redis prefix."""

    def __init__(
        self,
        *,
        redis_url: str = REDIS_URL,
        model: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        users: int = 20,
        command: tuple[str, ...] | None = None,
    ) -> None:
        self.command = command  # another bot in place of `threadwise serve` (bench 11)
        self.redis_url = redis_url
        self.model_kw = model or {}
        self.env = env or {}
        self.n_users = users
        self.prefix = f"tw-bench-{uuid.uuid4().hex[:8]}:"
        self._stack: Stack | None = None
        self._spy: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Stack:
        users = {f"U{i:04d}": f"Person {i}" for i in range(1, self.n_users + 1)}
        model = await ModelClock(**self.model_kw).start()
        slack = await SlackRecorder(users=users).start()
        teams = TeamsRecorder()
        await teams.start()
        env = {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            # Anonymous Teams is refused next to Slack: tokens checked against the fake's keys.
            "MICROSOFT_APP_ID": APP_ID,
            "MICROSOFT_APP_PASSWORD": "app-password-for-bench-only",
            "PYTHONPATH": f"{LOCAL_AUTH}:{ROOT}",
            "THREADWISE_TEST_JWKS_URL": teams.issuer.jwks_url,
            "THREADWISE_TEST_OUTGOING_TOKEN": teams.issuer.outgoing_token(APP_ID),
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "bench-key",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "LLM_MAX_RETRIES": "0",
            **self.env,
        }
        svc = ServeProcess(env, ready_timeout=30.0, command=self.command)
        try:
            await svc.start()
        except BaseException:
            await model.stop()
            await slack.stop()
            await teams.stop()
            raise
        # Like a real sender, a pool of keep-alive connections (not a new connection per event:
        # a burst of thousands of connects overflows any listen backlog and measures SYN retries)
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=SENDER_CONNECTIONS))
        profile = os.environ.get("BENCH_PROFILE")  # a path: py-spy samples the service
        if profile:
            self._spy = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(svc.proc.pid),
                "--rate",
                "200",
                "--format",
                os.environ.get("BENCH_PROFILE_FORMAT", "raw"),
                "-o",
                profile,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        self._stack = Stack(
            model, slack, teams, svc, http, self.prefix, self.redis_url, list(users)
        )
        return self._stack

    async def __aexit__(self, *exc: object) -> None:
        st = self._stack
        if st is None:
            return
        await st.http.close()
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            await self._spy.wait()
        await st.svc.stop()
        await st.model.stop()
        await st.slack.stop()
        await st.teams.stop()
        await delete_prefix(self.redis_url, self.prefix)


# ------------------------------------------------------------------------------------ traffic


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
    act["id"] = str(1_800_000_000_000 + next(_seq))
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
