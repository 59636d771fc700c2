"""A running `threadwise serve` for a bench: the recording fakes, the subprocess, CPU meters.

The service always runs as a real `threadwise serve` subprocess (the command operators run)
against real Redis under a private key prefix that is deleted afterwards; the fakes
(bench/recorders.py) run in the bench process.
"""

from __future__ import annotations

import asyncio
import json
import os
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
from bench.recorders import ModelClock, SlackRecorder, TeamsRecorder
from tests.support.fakes.fake_slack import DEFAULT_SIGNING_SECRET
from tests.support.fixtures.teams.harness import APP_ID
from tests.support.helpers import ROOT, ServeProcess, delete_prefix

LOCAL_AUTH = ROOT / "tests" / "support" / "local_auth"  # local Bot Framework keys

SENDER_CONNECTIONS = 256


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
