"""`FakeConnector`: the fake Bot Framework connector server, its streaming checks and key set.

It accepts activities posted to a conversation (or in reply to one), checks Teams' streaming
protocol, answers scheduled failures, and serves the Bot Framework key set of its `LocalIssuer`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import web

from tests.support.fakes.fake_connector.activities import Failure, Recorded, stream_info
from tests.support.fakes.fake_teams_files import FakeTeamsFiles
from tests.support.fakes.jwks import LocalIssuer


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


def _stream_text(activity: dict) -> str:
    info = stream_info(activity) or {}
    return "" if info.get("streamType") == "informative" else activity.get("text") or ""
