"""A local WebSocket server speaking Slack's Socket Mode protocol, for tests.

Slack's side of Socket Mode: the app calls `apps.connections.open` (on `FakeSlack`, whose
`socket_mode_url` points here), connects, receives `hello`, then envelopes —
`{"envelope_id", "type": "events_api" | "slash_commands", "payload", "accepts_response_payload",
"retry_attempt", "retry_reason"}` — and must answer each with `{"envelope_id": …}` (plus a
`payload` for slash commands when it has one). Built on the `websockets` library, so the
adapter's aiohttp-based client is checked against an independent implementation::

    async with FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        ... start the adapter ...
        await sm.wait_connected()
        eid = await sm.send_event(event_callback(app_mention("<@UBOT> hi")))
        ack = await sm.wait_ack(eid)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed


class FakeSocketMode:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, app_id: str = "A0FAKE"):
        self.host = host
        self._port = port
        self.app_id = app_id
        self._server: Server | None = None
        self.connections: list[ServerConnection] = []
        self.paths: list[str] = []
        self.received: list[dict[str, Any]] = []  # everything the app sent, parsed
        self.acks: dict[str, dict[str, Any]] = {}
        self.ack_times: dict[str, float] = {}
        self.sent_times: dict[str, float] = {}
        self._changed = asyncio.Event()

    async def start(self) -> FakeSocketMode:
        self._server = await serve(self._handle, self.host, self._port, compression=None)
        self._port = next(iter(self._server.sockets)).getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def __aenter__(self) -> FakeSocketMode:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """What `apps.connections.open` hands out (Slack's is `wss://wss-primary.slack.com/…`)."""
        return f"ws://{self.host}:{self._port}/link/?ticket={uuid.uuid4()}&app_id={self.app_id}"

    @property
    def open_connections(self) -> list[ServerConnection]:
        return [c for c in self.connections if c.state.name == "OPEN"]

    async def _handle(self, conn: ServerConnection) -> None:
        self.connections.append(conn)
        self.paths.append(conn.request.path if conn.request else "")
        await conn.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": len(self.open_connections),
                    "debug_info": {
                        "host": "applink-fake",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
        )
        self._changed.set()
        try:
            async for raw in conn:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                self.received.append(msg)
                eid = msg.get("envelope_id") if isinstance(msg, dict) else None
                if eid:
                    self.acks[eid] = msg
                    self.ack_times[eid] = time.monotonic()
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self._changed.set()

    async def _wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def wait_connected(self, timeout: float = 10.0) -> ServerConnection:
        await self._wait(lambda: self.open_connections, timeout, "a connection")
        return self.open_connections[-1]

    async def _send(
        self, kind: str, payload: Mapping[str, Any], *, accepts_response_payload: bool, **extra
    ) -> str:
        conn = await self.wait_connected()
        eid = str(uuid.uuid4())
        envelope = {
            "envelope_id": eid,
            "payload": dict(payload),
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            **extra,
        }
        self.sent_times[eid] = time.monotonic()
        await conn.send(json.dumps(envelope))
        return eid

    async def send_event(
        self, payload: Mapping[str, Any], *, retry_attempt: int = 0, retry_reason: str = ""
    ) -> str:
        """Deliver an Events API payload (an `event_callback` body); returns the envelope id."""
        return await self._send(
            "events_api",
            payload,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    async def send_slash_command(self, fields: Mapping[str, Any]) -> str:
        return await self._send("slash_commands", fields, accepts_response_payload=True)

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        conn = await self.wait_connected()
        await conn.send(
            json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}})
        )

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        await self._wait(lambda: envelope_id in self.acks, timeout, f"ack of {envelope_id}")
        return self.acks[envelope_id]

    def ack_latency(self, envelope_id: str) -> float:
        return self.ack_times[envelope_id] - self.sent_times[envelope_id]
