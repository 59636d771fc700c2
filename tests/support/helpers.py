"""Helpers for end-to-end tests: free ports and a `threadwise serve` subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


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
        ready_timeout=60.0,  # a busy machine: start-up imports take seconds per process
        args: tuple[str, ...] = (),
    ):
        self.args = args  # after `serve`, e.g. ("--workers", "2")
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
        import tempfile

        self._cwd = tempfile.mkdtemp(prefix="tw-serve-")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            *self.args,
            env=self.env,
            cwd=self._cwd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
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
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await asyncio.wait([self._reader], timeout=5)
        return self.proc.returncode or 0

    async def __aenter__(self) -> ServeProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete only the keys under a test's own prefix."""
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()
