"""Helpers for end-to-end tests: free ports, a `threadwise serve` subprocess, CLI runs.

Everything these helpers start is recorded in `SESSION`: each process until it is reaped,
each temp folder until it is removed. Every helper cleans up on failure as well; at the end of
the run `tests/conftest.py` checks the record (and removes what a test left) — only what this
session started, never anything else on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Started:
    """Processes (by pid) and temp folders this test session started and has not cleaned up."""

    pids: set[int] = field(default_factory=set)
    dirs: set[str] = field(default_factory=set)

    def mkdtemp(self, prefix: str) -> str:
        path = tempfile.mkdtemp(prefix=prefix)
        self.dirs.add(path)
        return path

    def rmtree(self, path: str | None) -> None:
        if path is not None:
            shutil.rmtree(path, ignore_errors=True)
            self.dirs.discard(path)

    def leftovers(self) -> tuple[list[int], list[str]]:
        """Our children still running (or unreaped), and our folders still on disk."""
        live = []
        for pid in sorted(self.pids):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped already: the pid is no longer ours
                self.pids.discard(pid)
                continue
            if done:
                self.pids.discard(pid)
            else:
                live.append(pid)
        return live, sorted(d for d in self.dirs if os.path.exists(d))

    def clean_up(self) -> tuple[list[int], list[str]]:
        """Kill and remove the leftovers; returns what was left, for the report."""
        live, dirs = self.leftovers()
        for pid in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            self.pids.discard(pid)
        for d in dirs:
            self.rmtree(d)
        return live, dirs


SESSION = Started()


async def reap(proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Kill `proc` if it still runs and wait for it; it leaves the session's record."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout)
    if proc.returncode is not None:
        SESSION.pids.discard(proc.pid)


async def run_cli(
    args: list[str], env: dict[str, str], stdin: str = "", cwd=None, timeout: float = 120.0
) -> tuple[int, str, str]:
    """`python -m bot ARGS` → (exit code, stdout, stderr); killed if it outlives `timeout`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        env=base_env(**env),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    SESSION.pids.add(proc.pid)
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    finally:
        await reap(proc)
    return proc.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**overrides: str) -> dict[str, str]:
    """A clean environment for a child service: no inherited THREADWISE/Slack/Azure settings."""
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TIKTOKEN_CACHE_DIR", "PYTHONPATH"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.setdefault("PYTHONPATH", str(ROOT))
    env.update({"LOG_FORMAT": "json", "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


class ServeProcess:
    """`threadwise serve` in a subprocess; `async with ServeProcess(env) as svc:`.

    The child runs from an empty working directory so a developer's `.env` never leaks in.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        port: int | None = None,
        ready_timeout=120.0,  # a busy machine: start-up imports take seconds per process
        args: tuple[str, ...] = (),
        command: tuple[str, ...] | None = None,
    ):
        self.args = args  # after `serve`, e.g. ("--workers", "2")
        # Another program in place of `threadwise serve` (bench 11's Chat SDK bot): it must
        # read PORT and answer GET /healthz like serve does.
        self.command = command or (sys.executable, "-m", "bot", "serve", *args)
        self.port = port or int(env.get("PORT") or free_port())
        self.env = base_env(**{**env, "PORT": str(self.port)})
        self.ready_timeout = ready_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task | None = None
        self._cwd = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> ServeProcess:
        """Start and wait until healthy (generous: a busy machine); on failure, clean up."""
        try:
            return await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> ServeProcess:
        self._cwd = SESSION.mkdtemp("tw-serve-")
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            env=self.env,
            cwd=self._cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        SESSION.pids.add(self.proc.pid)
        self._reader = asyncio.create_task(self._read())
        deadline = asyncio.get_running_loop().time() + self.ready_timeout
        async with aiohttp.ClientSession() as http:
            while True:
                if self.proc.returncode is not None:
                    await asyncio.sleep(0.1)
                    raise RuntimeError("serve exited early:\n" + self.output())
                try:
                    async with http.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                if asyncio.get_running_loop().time() > deadline:
                    raise RuntimeError("serve did not become healthy:\n" + self.output())
                await asyncio.sleep(0.05)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal, wait (then kill), and remove the working folder, whatever happens."""
        try:
            if self.proc is None:
                return 0
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(sig)
                try:
                    await asyncio.wait_for(self.proc.wait(), timeout)
                except TimeoutError:
                    pass
            await reap(self.proc)
            if self._reader is not None:
                await asyncio.wait([self._reader], timeout=5)
            return self.proc.returncode or 0
        finally:
            SESSION.rmtree(self._cwd)

    async def __aenter__(self) -> ServeProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def delete_prefix(redis_url: str, prefix: str, *, cluster: bool = False) -> None:
    """Delete only the keys under a test's own prefix (on every master of a cluster)."""
    import redis.asyncio as aioredis

    if cluster:
        rc = aioredis.RedisCluster.from_url(redis_url)
        try:
            await rc.initialize()
            nodes = [(n.host, n.port) for n in rc.get_primaries()]
        finally:
            await rc.aclose()
        for host, port in nodes:
            node = aioredis.Redis(host=host, port=port)
            try:
                async for key in node.scan_iter(match=f"{prefix}*", count=1000):
                    await node.delete(key)
            finally:
                await node.aclose()
        return

    r = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()
