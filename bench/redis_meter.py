"""What bench 4 measures Redis with: a private `redis-server`, a counting proxy, commandstats.

The proxy sits between `threadwise serve` and Redis, parses the RESP the service sends and
counts each request burst (a send after the previous answer: one round trip, however many
pipelined commands it holds) and each top-level command. `INFO commandstats` adds the commands
run inside Lua scripts.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

import redis.asyncio as aioredis

# ------------------------------------------------------------------------------ private Redis


class PrivateRedis:
    """A throwaway `redis-server` (no persistence) on a free port."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="tw-bench-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> PrivateRedis:
        exe = shutil.which("redis-server")
        assert exe is not None
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", self.dir]
        self.proc = subprocess.Popen(  # noqa: ASYNC220 — starts in a blink, no output to read
            [exe, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        r = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(200):
                with contextlib.suppress(Exception):
                    if await r.ping():
                        return self
                await asyncio.sleep(0.05)
        finally:
            await r.aclose()
        raise RuntimeError("redis-server did not start")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------ counting proxy


class _Resp:
    """Incremental parser of the commands a client sends (RESP arrays of bulk strings)."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[str]:
        self.buf += data
        names = []
        while True:
            parsed = self._one()
            if parsed is None:
                return names
            names.append(parsed)

    def _line(self, pos: int) -> tuple[bytes, int] | None:
        end = self.buf.find(b"\r\n", pos)
        return None if end < 0 else (self.buf[pos:end], end + 2)

    def _one(self) -> str | None:
        head = self._line(0)
        if head is None:
            return None
        line, pos = head
        if not line.startswith(b"*"):  # inline command
            self.buf = self.buf[pos:]
            return line.split(b" ", 1)[0].decode(errors="replace").lower()
        name = None
        for _ in range(int(line[1:])):
            got = self._line(pos)
            if got is None:
                return None
            length, pos = int(got[0][1:]), got[1]
            if len(self.buf) < pos + length + 2:
                return None
            if name is None:
                name = self.buf[pos : pos + length].decode(errors="replace").lower()
            pos += length + 2
        self.buf = self.buf[pos:]
        return name or "?"


@dataclass
class Counts:
    round_trips: int = 0
    commands: Counter = field(default_factory=Counter)
    sent_bytes: int = 0
    last_traffic: float = 0.0

    def snapshot(self) -> tuple[int, Counter, int]:
        return self.round_trips, Counter(self.commands), self.sent_bytes


class CountingProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.counts = Counts()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> CountingProxy:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)

    async def _client(self, creader, cwriter) -> None:
        ureader, uwriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        state = {"answered": True}
        parser = _Resp()

        async def up() -> None:
            while data := await creader.read(65536):
                c = self.counts
                if state["answered"]:
                    c.round_trips += 1
                    state["answered"] = False
                c.sent_bytes += len(data)
                c.commands.update(parser.feed(data))
                c.last_traffic = time.monotonic()
                uwriter.write(data)
                await uwriter.drain()
            uwriter.close()

        async def down() -> None:
            while data := await ureader.read(65536):
                state["answered"] = True
                self.counts.last_traffic = time.monotonic()
                cwriter.write(data)
                await cwriter.drain()
            cwriter.close()

        with contextlib.suppress(Exception):
            await asyncio.gather(up(), down())

    async def quiet(self, for_s: float = 0.3, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if time.monotonic() - self.counts.last_traffic >= for_s:
                return
            await asyncio.sleep(for_s / 3)


# ------------------------------------------------------------------------------ commandstats


async def commandstats(r: aioredis.Redis) -> Counter:
    info = await r.info("commandstats")
    return Counter(
        {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and not k.endswith(("_info", "_ping"))
        }
    )
