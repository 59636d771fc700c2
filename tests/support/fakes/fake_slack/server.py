"""`FakeSlack`: the fake Slack Web API server — lifecycle, scripted failures, reading the state.

It serves `/api/{method}` (answered by the `SlackWebApi` methods it inherits), slash commands'
`response_url`s, the files of `FakeSlackFiles` and, for standalone use, the `/_fake/*` control
routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from tests.support.fakes.fake_slack.files import FakeSlackFiles
from tests.support.fakes.fake_slack.state import (
    DEFAULT_APP_TOKEN,
    DEFAULT_TOKEN,
    MARKDOWN_LIMIT,
    Call,
    FakeSlackState,
    Message,
    SlackError,
)
from tests.support.fakes.fake_slack.web_api import SlackWebApi


@dataclass
class _Failure:
    error: str | None
    status: int
    remaining: int | None  # None: until reset
    retry_after: int | None
    delay: float = 0.0


class FakeSlack(SlackWebApi):
    """The fake Web API server. Use `async with FakeSlack() as slack:`."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        app_token: str = DEFAULT_APP_TOKEN,
        team_id: str = "T0FAKE",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        users: Mapping[str, str | Mapping[str, Any]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        markdown_limit: int = MARKDOWN_LIMIT,
        enterprise_id: str | None = None,
        org_install: bool = False,
    ):
        self.token = token
        self.app_token = app_token
        self.team_id = team_id
        self.enterprise_id = enterprise_id  # an Enterprise Grid org
        self.org_install = org_install  # installed org-wide: the token serves every workspace
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.users: dict[str, str | Mapping[str, Any]] = dict(users or {})
        self.channels: dict[str, str] = {"C1": "general"}  # conversations.info names
        self.host = host
        self._port = port
        self.markdown_limit = markdown_limit
        self.socket_mode_url: str | None = None
        self.state = FakeSlackState()
        self._failures: dict[str, list[_Failure]] = {}
        self._ts = itertools.count(1)
        self._changed = asyncio.Event() if _has_loop() else None
        self._runner: web.AppRunner | None = None
        self.files = FakeSlackFiles(self)  # url_private_download and files.info

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        self._changed = asyncio.Event()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/_response/{rid}", self._response_url)
        self.files.mount(app)
        app.router.add_get("/_fake/calls", self._ctl_calls)
        app.router.add_get("/_fake/messages", self._ctl_messages)
        app.router.add_get("/_fake/responses", self._ctl_responses)
        app.router.add_post("/_fake/fail", self._ctl_fail)
        app.router.add_post("/_fake/reset", self._ctl_reset)
        app.router.add_post("/_fake/config", self._ctl_config)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port)
        await site.start()
        self._port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def api_url(self) -> str:
        """The SLACK_API_URL for this fake (slack_sdk's `base_url`)."""
        return f"{self.url}/api/"

    def response_url(self, rid: str | None = None) -> str:
        """A slash command's response_url that records what is posted to it."""
        return f"{self.url}/_response/{rid or uuid.uuid4().hex[:12]}"

    # -- scripting ---------------------------------------------------------------------------

    def fail(
        self,
        method: str,
        *,
        error: str | None = None,
        status: int | None = None,
        times: int | None = 1,
        retry_after: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make `method` fail the next `times` calls (None: until reset).

        `status=429` answers "ratelimited" with `Retry-After` (default 1 s); another `status`
        answers that HTTP status; else `error` is answered as `{"ok": false, "error": …}` with
        200, the way Slack reports most failures (`not_allowed`, `feature_not_enabled`, …).
        `method="response_url"` fails slash-command answers. `delay` waits before answering.
        """
        if status is None:
            status = 200
            error = error or "fatal_error"
        elif status == 429:
            error = error or "ratelimited"
            retry_after = 1 if retry_after is None else retry_after
        self._failures.setdefault(method, []).append(
            _Failure(error, status, times, retry_after, delay)
        )

    def reset(self) -> None:
        self.state = FakeSlackState()
        self._failures.clear()
        self.files.reset()

    def _take_failure(self, method: str) -> _Failure | None:
        queue = self._failures.get(method)
        while queue:
            f = queue[0]
            if f.remaining is None:
                return f
            if f.remaining > 0:
                f.remaining -= 1
                if f.remaining == 0:
                    queue.pop(0)
                return f
            queue.pop(0)
        return None

    # -- reading the state -------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        return self.state.calls

    def calls_to(self, *methods: str) -> list[Call]:
        return [c for c in self.state.calls if c.method in methods]

    def methods(self, *, exclude: tuple[str, ...] = ("auth.test", "users.info")) -> list[str]:
        """The methods called, in order (lookups left out unless asked for)."""
        return [c.method for c in self.state.calls if c.method not in exclude]

    def bot_messages(self, channel: str | None = None) -> list[Message]:
        msgs = [m for m in self.state.messages.values() if not m.deleted]
        if channel is not None:
            msgs = [m for m in msgs if m.channel == channel]
        return sorted(msgs, key=lambda m: float(m.ts))

    def thread(self, channel: str, thread_ts: str | None) -> list[Message]:
        """The bot's messages in a thread (`thread_ts=None`: at the channel's top level)."""
        return [m for m in self.bot_messages(channel) if m.thread_ts == thread_ts]

    def thread_texts(self, channel: str, thread_ts: str | None) -> list[str]:
        return [m.text for m in self.thread(channel, thread_ts)]

    @property
    def responses(self) -> list[dict[str, Any]]:
        return self.state.responses

    @property
    def reactions(self) -> set[tuple[str, str, str]]:
        return self.state.reactions

    @property
    def statuses(self) -> list[dict[str, Any]]:
        return self.state.statuses

    async def wait_for(self, predicate: Callable[[FakeSlack], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(self)` holds (checked after every call), or fail."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; Slack saw {self.methods()}")
            assert self._changed is not None
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))

    async def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no call has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.state.calls[-1].t if self.state.calls else 0.0
            if time.monotonic() - last >= quiet:
                return
            await asyncio.sleep(quiet / 3)

    # -- the Web API (the methods are SlackWebApi's) ------------------------------------------

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            raw = await request.text()
            ctype = request.content_type
            if ctype == "application/json":
                with contextlib.suppress(ValueError):
                    data = json.loads(raw or "{}")
                    if isinstance(data, dict):
                        params.update(data)
            elif raw:
                params.update(dict(parse_qsl(raw, keep_blank_values=True)))
        for key in ("chunks", "blocks", "loading_messages"):
            if isinstance(params.get(key), str):
                with contextlib.suppress(ValueError):
                    params[key] = json.loads(params[key])
        return params

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else params.get("token", "")
        call = Call(method, {k: v for k, v in params.items() if k != "token"}, time.monotonic())
        self.state.calls.append(call)
        try:
            failure = self._take_failure(method)
            if failure is not None:
                if failure.delay:
                    await asyncio.sleep(failure.delay)
                call.ok, call.error, call.status = False, failure.error, failure.status
                if failure.status == 429:
                    return web.json_response(
                        {"ok": False, "error": failure.error},
                        status=429,
                        headers={"Retry-After": str(failure.retry_after)},
                    )
                if failure.status != 200:
                    return web.Response(status=failure.status, text="fake server error")
                return web.json_response({"ok": False, "error": failure.error})
            expected = self.app_token if method == "apps.connections.open" else self.token
            if token != expected:
                raise SlackError("invalid_auth" if token else "not_authed")
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                raise SlackError("unknown_method")
            result = handler(params)
            return web.json_response({"ok": True, **result})
        except SlackError as e:
            call.ok, call.error = False, e.error
            return web.json_response({"ok": False, "error": e.error})
        finally:
            if self._changed is not None:
                self._changed.set()

    # -- response_url ------------------------------------------------------------------------

    async def _response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        raw = await request.text()
        call = Call("response_url", {"rid": rid}, time.monotonic())
        self.state.calls.append(call)
        try:
            failure = self._take_failure("response_url")
            if failure is not None:
                call.ok, call.status = False, failure.status if failure.status != 200 else 404
                return web.Response(status=call.status, text="expired_url")
            try:
                body = json.loads(raw)
            except ValueError:
                call.ok, call.status = False, 400
                return web.Response(status=400, text="invalid_payload")
            call.params.update(body)
            self.state.responses.append({"rid": rid, **body})
            return web.Response(text="ok")
        finally:
            if self._changed is not None:
                self._changed.set()

    # -- control routes (standalone use) -----------------------------------------------------

    async def _ctl_calls(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(c) for c in self.state.calls])

    async def _ctl_messages(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(m) for m in self.bot_messages()])

    async def _ctl_responses(self, request: web.Request) -> web.Response:
        return web.json_response(self.state.responses)

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        spec = await request.json()
        self.fail(
            spec["method"],
            error=spec.get("error"),
            status=spec.get("status"),
            times=spec.get("times", 1),
            retry_after=spec.get("retry_after"),
            delay=float(spec.get("delay", 0.0)),
        )
        return web.json_response({"ok": True})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _ctl_config(self, request: web.Request) -> web.Response:
        spec = await request.json()
        if "socket_mode_url" in spec:
            self.socket_mode_url = spec["socket_mode_url"]
        if "users" in spec:
            self.users.update(spec["users"])
        return web.json_response({"ok": True})


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False
