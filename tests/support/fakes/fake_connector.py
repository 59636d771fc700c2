"""A local fake of the Bot Framework connector (the `serviceUrl` Teams activities carry).

It speaks the wire format bots use to reply:

- `POST /v3/conversations/{conversationId}/activities` (send to conversation)
- `POST /v3/conversations/{conversationId}/activities/{replyToId}` (reply to an activity)

Each accepted activity is recorded and answered `201 {"id": …}`. The streaming protocol is
checked the way Teams checks it: the first update (`streamSequence` 1) opens a stream and gets
its id; later updates must carry that `streamId`, an increasing `streamSequence` and text that
extends what was shown; after the `final` message the stream is closed (403
ContentStreamNotAllowed); streaming outside 1:1 chats is refused (400 BadArgument).

Failures can be scheduled: `fail(403, code="ContentStreamNotAllowed")`, `fail(429,
retry_after=1)`, `fail(503)`, each for the next `count` matching posts.

It also serves a local Bot Framework key set (`fc.issuer`, a `LocalIssuer` made on first use:
`fc.issuer.jwks_url`, `fc.authorization(app_id)` → a cached `Bearer` header for activities that
name this connector as their `serviceUrl`), so a service under test can run with real token
checks against it. The bot refuses to post to a loopback service URL with its token; a test lets
it with `allow_loopback_service_urls(monkeypatch)` (in-process) or the serve child's
tests/support/local_auth/sitecustomize.py.

In-process: `async with FakeConnector() as fc:` (`fc.url`, `fc.activities`, `fc.fail(...)`).
Standalone: `python -m tests.support.fakes.fake_connector --port N` prints `READY <url>`; then
`GET /_fake/activities`, `POST /_fake/fail` (JSON: status, count, code, retry_after, match),
`POST /_fake/reset`.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from microsoft_agents.hosting.core import OutboundHostValidator
from yarl import URL

from tests.support.fakes.fake_teams_files import FakeTeamsFiles
from tests.support.fakes.jwks import LocalIssuer


@dataclass
class Failure:
    status: int
    count: int = 1
    code: str | None = None
    message: str = ""
    retry_after: float | None = None
    # Only posts whose activity matches every key here fail: "type", "text", or a streaminfo
    # field ("streamType", "streamSequence", "streamId").
    match: dict[str, Any] = field(default_factory=dict)

    def matches(self, activity: dict) -> bool:
        for key, want in self.match.items():
            if key.startswith("stream"):
                have = (stream_info(activity) or {}).get(key)
            else:
                have = activity.get(key)
            if have != want:
                return False
        return True


@dataclass
class Recorded:
    """One accepted post."""

    conversation_id: str
    reply_to_id: str | None
    activity: dict
    id: str
    at: float  # time.monotonic() when received (pacing checks)
    wall: float  # time.time()
    authorization: str | None

    @property
    def type(self) -> str:
        return self.activity.get("type", "")

    @property
    def text(self) -> str:
        return self.activity.get("text") or ""

    @property
    def stream(self) -> dict | None:
        return stream_info(self.activity)

    def as_json(self) -> dict:
        return {
            "conversation_id": self.conversation_id,
            "reply_to_id": self.reply_to_id,
            "activity": self.activity,
            "id": self.id,
            "at": self.wall,
            "authorization": self.authorization,
        }


def stream_info(activity: dict) -> dict | None:
    for entity in activity.get("entities") or []:
        if isinstance(entity, dict) and entity.get("type") == "streaminfo":
            return entity
    return None


def opens_stream(info: dict) -> bool:
    """Whether a streaminfo is a stream's first update (informative, or the first words)."""
    return info.get("streamType") in ("informative", "streaming") and not info.get("streamId")


def _error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


class FakeConnector:
    def __init__(self) -> None:
        self.activities: list[Recorded] = []
        self.rejected: list[tuple[int, dict]] = []  # (status, activity) of refused posts
        self.failures: list[Failure] = []
        self._ids = itertools.count(1_700_000_000_000)
        self._streams: dict[str, dict] = {}  # stream id → {"seq": n, "text": str, "closed": bool}
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.changed = asyncio.Event()
        self._issuer: LocalIssuer | None = None
        self._tokens: dict[tuple[str, str | None], str] = {}
        self.files = FakeTeamsFiles(self)  # pasted images and pre-signed file downloads

    # -- tokens

    @property
    def issuer(self) -> LocalIssuer:
        """The Bot Framework key set served at this connector (keys made on first use)."""
        if self._issuer is None:
            self._issuer = LocalIssuer()
            self._issuer.url = self.url.rstrip("/")
        return self._issuer

    def authorization(self, app_id: str, service_url: str | None = "") -> str:
        """`Bearer <token>` as Azure Bot Service sends it (`serviceurl` = this connector).

        `service_url=None` leaves the claim out; one token per kind is minted and reused.
        """
        claim = self.url if service_url == "" else service_url
        key = (app_id, claim)
        if key not in self._tokens:
            self._tokens[key] = "Bearer " + self.issuer.token(aud=app_id, service_url=claim)
        return self._tokens[key]

    # -- control

    def fail(
        self,
        status: int,
        *,
        count: int = 1,
        code: str | None = None,
        message: str = "",
        retry_after: float | None = None,
        match: dict[str, Any] | None = None,
    ) -> None:
        self.failures.append(Failure(status, count, code, message, retry_after, match or {}))

    def reset(self) -> None:
        self.activities.clear()
        self.rejected.clear()
        self.failures.clear()
        self._streams.clear()
        self.files.reset()

    def messages(self, conversation_id: str | None = None) -> list[Recorded]:
        return [
            a
            for a in self.activities
            if a.type == "message"
            and (conversation_id is None or a.conversation_id == conversation_id)
        ]

    async def wait_for(self, predicate, timeout: float = 10.0) -> list[Recorded]:
        """Wait until `predicate(self.activities)` is true; returns the activities."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate(self.activities):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise TimeoutError(
                    "fake connector: condition not met; got "
                    + json.dumps([a.activity for a in self.activities])[:3000]
                )
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                pass
        return self.activities

    async def wait_for_final(self, conversation_id: str | None = None, timeout=10.0):
        """Wait for a message that is not followed by anything for a short moment."""
        await self.wait_for(lambda acts: any(a.type == "message" for a in acts), timeout)
        return self.messages(conversation_id)

    # -- HTTP

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation_id}/activities", self._post)
        app.router.add_post(
            "/v3/conversations/{conversation_id}/activities/{reply_to_id}", self._post
        )
        app.router.add_get("/v1/.well-known/keys", self._keys)
        app.router.add_get("/v1/.well-known/openidconfiguration", self._openid)
        app.router.add_get("/_fake/activities", self._list)
        app.router.add_post("/_fake/fail", self._fail)
        app.router.add_post("/_fake/reset", self._reset)
        self.files.mount(app)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.url = f"http://{host}:{sockets[0].getsockname()[1]}/"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeConnector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _keys(self, request: web.Request) -> web.Response:
        self.issuer.requests += 1
        return web.json_response(self.issuer.jwks())

    async def _openid(self, request: web.Request) -> web.Response:
        return web.json_response(self.issuer.openid_configuration())

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "activities": [a.as_json() for a in self.activities],
                "rejected": [{"status": s, "activity": a} for s, a in self.rejected],
            }
        )

    async def _fail(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.fail(
            int(body["status"]),
            count=int(body.get("count", 1)),
            code=body.get("code"),
            message=body.get("message", ""),
            retry_after=body.get("retry_after"),
            match=body.get("match"),
        )
        return web.json_response({"ok": True})

    async def _reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _post(self, request: web.Request) -> web.Response:
        try:
            activity = await request.json()
        except ValueError:
            return _error(400, "BadSyntax", "body is not JSON")
        conversation_id = request.match_info["conversation_id"]
        reply_to_id = request.match_info.get("reply_to_id")
        try:
            return self._accept(request, conversation_id, reply_to_id, activity)
        finally:
            self.changed.set()

    def _accept(
        self, request: web.Request, conversation_id: str, reply_to_id: str | None, activity: dict
    ) -> web.Response:
        for failure in self.failures:
            if failure.count > 0 and failure.matches(activity):
                failure.count -= 1
                self.rejected.append((failure.status, activity))
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(failure.retry_after)
                code = failure.code or {429: "Throttled", 403: "Forbidden"}.get(
                    failure.status, "ServiceError"
                )
                return _error(failure.status, code, failure.message or code, headers)
        if activity.get("type") not in ("message", "typing", "event", "trace"):
            self.rejected.append((400, activity))
            return _error(400, "BadArgument", "Unknown activity type")
        info = stream_info(activity)
        if info is not None:
            refused = self._check_stream(activity, info)
            if refused is not None:
                self.rejected.append((refused.status, activity))
                return refused
        elif activity.get("type") == "message" and not (activity.get("text") or "").strip():
            if not activity.get("attachments"):
                self.rejected.append((400, activity))
                return _error(400, "BadArgument", "Message has no content")
        new_id = str(next(self._ids))
        result_id = new_id
        if info is not None:
            if info.get("streamId"):
                result_id = info["streamId"]
            else:
                self._streams[new_id] = {"seq": info.get("streamSequence") or 0, "text": ""}
                self._streams[new_id]["text"] = _stream_text(activity)
                self._streams[new_id]["closed"] = info.get("streamType") == "final"
        self.activities.append(
            Recorded(
                conversation_id=conversation_id,
                reply_to_id=reply_to_id,
                activity=activity,
                id=result_id,
                at=time.monotonic(),
                wall=time.time(),
                authorization=request.headers.get("Authorization"),
            )
        )
        return web.json_response({"id": result_id}, status=201)

    def _check_stream(self, activity: dict, info: dict) -> web.Response | None:
        conv = activity.get("conversation") or {}
        if conv.get("conversationType") not in (None, "personal"):
            return _error(400, "BadArgument", "Streaming API is not enabled for this conversation")
        stream_type = info.get("streamType")
        stream_id = info.get("streamId")
        if not stream_id:
            if info.get("streamSequence") != 1 or stream_type == "final":
                return _error(400, "BadArgument", "A new stream starts with streamSequence 1")
            if activity.get("type") != "typing":
                return _error(400, "BadArgument", "Stream updates are typing activities")
            return None
        stream = self._streams.get(stream_id)
        if stream is None:
            return _error(404, "NotFound", "Unknown streamId")
        if stream["closed"]:
            return _error(403, "ContentStreamNotAllowed", "Content stream is not allowed")
        text = _stream_text(activity)
        if stream_type == "final":
            if activity.get("type") != "message" or "streamSequence" in info:
                return _error(400, "BadArgument", "The final stream message is a message")
            stream["closed"] = True
            stream["text"] = text
            return None
        if activity.get("type") != "typing":
            return _error(400, "BadArgument", "Stream updates are typing activities")
        seq = info.get("streamSequence")
        if not isinstance(seq, int) or seq <= stream["seq"]:
            return _error(400, "BadArgument", "streamSequence must increase")
        if stream_type == "streaming" and stream["text"] and not text.startswith(stream["text"]):
            return _error(400, "BadArgument", "Streamed content must extend the previous content")
        stream["seq"] = seq
        if stream_type == "streaming":
            stream["text"] = text
        return None


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def allow_loopback_service_urls(monkeypatch) -> None:
    """Let the bot post with its token to plain-http loopback URLs (where fakes listen).

    The same patch tests/support/local_auth/sitecustomize.py makes in a serve child: the
    Agents SDK's outbound host check admits loopback too; every other host is judged as before.
    """
    sdk_is_allowed = OutboundHostValidator.is_allowed

    def or_loopback(self, url) -> bool:
        parsed = URL(str(url))
        if parsed.scheme == "http" and _loopback(parsed.host):
            return True
        return sdk_is_allowed(self, url)

    monkeypatch.setattr(OutboundHostValidator, "is_allowed", or_loopback)


def _stream_text(activity: dict) -> str:
    info = stream_info(activity) or {}
    return "" if info.get("streamType") == "informative" else activity.get("text") or ""


async def _main(port: int, host: str) -> None:
    fake = FakeConnector()
    url = await fake.start(host, port)
    print(f"READY {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fake Bot Framework connector")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    try:
        asyncio.run(_main(args.port, args.host))
    except KeyboardInterrupt:
        pass
