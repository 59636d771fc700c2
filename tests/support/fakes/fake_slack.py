"""A local fake of the Slack Web API (and of Slack's side of the Events API), for tests.

It speaks the real wire format, so the adapter is tested through the real ``slack_sdk``
client pointed at it with ``base_url``::

    async with FakeSlack(users={"U1": "Ann"}) as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
        slack.fail("chat.startStream", error="not_allowed")      # streaming refused, once
        slack.fail("chat.postMessage", status=429, retry_after=1) # rate limited, once
        ...
        assert slack.methods() == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
        assert slack.thread_texts("C1", "1700000000.000100") == ["the reply"]

Every call is recorded (method, merged query/form/JSON params, monotonic time). Messages the
bot posts are kept with their final Markdown, streaming state and thread, so a test can read a
thread the way a person would see it. Slash-command answers go to ``slack.response_url()``.

It also plays Slack towards the service: `signed_headers()` signs an Events API / slash body
the way Slack does, and `event_callback()`, `app_mention()`, `message()`, `slash_command()`
build the payloads — also as a Slack Connect channel or an Enterprise Grid org delivers them
(`event_callback(team_id=<where it happened>, installation={...}, shared=True)`; a
`FakeSlack(enterprise_id=…, org_install=True)` answers auth.test as an org-wide install).

Standalone::

    python -m tests.support.fakes.fake_slack --port 0
    # prints "READY http://127.0.0.1:PORT/api/" (the SLACK_API_URL) once listening

with ``GET /_fake/calls``, ``GET /_fake/messages``, ``GET /_fake/responses``,
``POST /_fake/fail`` (JSON: method, error | status, times, retry_after), ``POST /_fake/reset``,
``POST /_fake/config`` (JSON: socket_mode_url, users).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import signal
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from tests.support.fakes.fake_slack_files import FakeSlackFiles

DEFAULT_TOKEN = "xoxb-fake-bot-token"
DEFAULT_APP_TOKEN = "xapp-fake-app-token"
DEFAULT_SIGNING_SECRET = "fake-signing-secret"
MARKDOWN_LIMIT = 12_000  # markdown_text per call, as Slack documents
TEXT_LIMIT = 40_000


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    t: float  # time.monotonic() when the call arrived
    status: int = 200
    ok: bool = True
    error: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    streaming: bool = False
    deleted: bool = False
    edits: int = 0
    user: str = ""
    recipient_user_id: str | None = None
    recipient_team_id: str | None = None
    blocks: list[Any] | None = None  # the message's blocks, as last posted, updated or stopped


@dataclass
class _Failure:
    error: str | None
    status: int
    remaining: int | None  # None: until reset
    retry_after: int | None
    delay: float = 0.0


@dataclass
class FakeSlackState:
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    reactions: set[tuple[str, str, str]] = field(default_factory=set)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    suggested_prompts: list[dict[str, Any]] = field(default_factory=list)
    titles: list[dict[str, Any]] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)  # views.publish: user_id, view
    responses: list[dict[str, Any]] = field(default_factory=list)


class SlackError(Exception):
    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


def _user_record(uid: str, team: str, spec: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = {"display_name": spec, "real_name": spec}
    display = spec.get("display_name", "")
    real = spec.get("real_name", display)
    return {
        "id": uid,
        "team_id": spec.get("team_id", team),  # a Slack Connect user: their own org's workspace
        "name": spec.get("name", (display or real or uid).lower().replace(" ", ".")),
        "real_name": real,
        "is_bot": bool(spec.get("is_bot", False)),
        "profile": {"display_name": display, "real_name": real},
    }


class FakeSlack:
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

    # -- the Web API -------------------------------------------------------------------------

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

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

    @staticmethod
    def _need(params: Mapping[str, Any], *names: str) -> None:
        for name in names:
            if not params.get(name):
                raise SlackError("channel_not_found" if name == "channel" else "invalid_arguments")

    @staticmethod
    def _chunk_text(params: Mapping[str, Any]) -> str:
        text = params.get("markdown_text") or ""
        for chunk in params.get("chunks") or []:
            if isinstance(chunk, dict) and chunk.get("type") == "markdown_text":
                text += chunk.get("text", "")
        return text

    def _message_json(self, m: Message) -> dict[str, Any]:
        out = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "text": m.text,
            "ts": m.ts,
        }
        if m.thread_ts:
            out["thread_ts"] = m.thread_ts
        if m.blocks:
            out["blocks"] = m.blocks
        return out

    def message_payload(self, m: Message) -> dict[str, Any]:
        """`m` as Slack puts it in an interactivity payload (`block_actions(…)`)."""
        return self._message_json(m)

    @staticmethod
    def feedback_buttons(m: Message) -> dict[str, Any] | None:
        """The `feedback_buttons` element of `m`'s `context_actions` block, if it has one."""
        for block in m.blocks or []:
            if block.get("type") == "context_actions":
                for element in block.get("elements", []):
                    if element.get("type") == "feedback_buttons":
                        return element
        return None

    def _find(self, params: Mapping[str, Any]) -> Message:
        self._need(params, "channel", "ts")
        m = self.state.messages.get((params["channel"], params["ts"]))
        if m is None or m.deleted:
            raise SlackError("message_not_found")
        return m

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        answer = {
            "url": "https://fake.slack.test/",
            "team": "Fake Team",
            "user": "threadwise",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": self.org_install,
        }
        if self.enterprise_id is not None:  # only Grid orgs have one
            answer["enterprise_id"] = self.enterprise_id
        return answer

    def _m_files_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return self.files.info(params)

    def _m_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        uid = params.get("user", "")
        if uid == self.bot_user_id and uid not in self.users:  # Slack knows its bot users too
            return {"user": _user_record(uid, self.team_id, {"name": "threadwise", "is_bot": True})}
        if uid not in self.users:
            raise SlackError("user_not_found")
        return {"user": _user_record(uid, self.team_id, self.users[uid])}

    def _m_apps_connections_open(self, params: dict[str, Any]) -> dict[str, Any]:
        if not self.socket_mode_url:
            raise SlackError("internal_error")
        return {"url": self.socket_mode_url}

    def _post_text(self, params: Mapping[str, Any]) -> str:
        md = params.get("markdown_text")
        text = params.get("text")
        if md is not None and (text or params.get("blocks")):
            raise SlackError("invalid_arguments")  # markdown_text goes alone
        if md is not None:
            if len(md) > self.markdown_limit:
                raise SlackError("msg_too_long")
            return md
        if text:
            if len(text) > TEXT_LIMIT:
                raise SlackError("msg_too_long")
            return text
        if params.get("blocks"):
            return json.dumps(params["blocks"])
        raise SlackError("no_text")

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel")
        text = self._post_text(params)
        m = Message(
            params["channel"],
            self._next_ts(),
            text,
            thread_ts=params.get("thread_ts") or None,
            user=self.bot_user_id,
        )
        m.blocks = params.get("blocks") or None
        self.state.messages[(m.channel, m.ts)] = m
        return {"channel": m.channel, "ts": m.ts, "message": self._message_json(m)}

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        m.text = self._post_text(params)
        m.blocks = params.get("blocks") or None
        m.edits += 1
        return {"channel": m.channel, "ts": m.ts, "text": m.text, "message": self._message_json(m)}

    def _m_chat_delete(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        m.deleted = True
        return {"channel": m.channel, "ts": m.ts}

    def _m_chat_startStream(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "thread_ts")
        channel = params["channel"]
        if not channel.startswith("D") and not (
            params.get("recipient_team_id") and params.get("recipient_user_id")
        ):
            raise SlackError("invalid_arguments")  # required when streaming to channels
        text = self._chunk_text(params)
        if len(text) > self.markdown_limit:
            raise SlackError("msg_too_long")
        m = Message(
            channel,
            self._next_ts(),
            text,
            thread_ts=params["thread_ts"],
            streaming=True,
            user=self.bot_user_id,
            recipient_team_id=params.get("recipient_team_id"),
            recipient_user_id=params.get("recipient_user_id"),
        )
        self.state.messages[(m.channel, m.ts)] = m
        return {"channel": m.channel, "ts": m.ts}

    def _m_chat_appendStream(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        if not m.streaming:
            raise SlackError("message_not_in_streaming_state")
        text = self._chunk_text(params)
        if len(text) > self.markdown_limit:
            raise SlackError("msg_too_long")
        m.text += text
        return {"channel": m.channel, "ts": m.ts}

    def _m_chat_stopStream(self, params: dict[str, Any]) -> dict[str, Any]:
        m = self._find(params)
        if not m.streaming:
            raise SlackError("message_not_in_streaming_state")
        m.text += self._chunk_text(params)
        m.streaming = False
        m.blocks = params.get("blocks") or None
        return {"channel": m.channel, "ts": m.ts, "message": self._message_json(m)}

    def _m_assistant_threads_setStatus(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel_id", "thread_ts")
        self.state.statuses.append(
            {k: params.get(k) for k in ("channel_id", "thread_ts", "status", "loading_messages")}
        )
        return {}

    def _m_assistant_threads_setSuggestedPrompts(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel_id", "thread_ts", "prompts")
        prompts = params["prompts"]
        if isinstance(prompts, str):
            prompts = json.loads(prompts)
        if not isinstance(prompts, list) or not 1 <= len(prompts) <= 4:
            raise SlackError("invalid_arguments")
        self.state.suggested_prompts.append(
            {
                "channel_id": params["channel_id"],
                "thread_ts": params["thread_ts"],
                "title": params.get("title"),
                "prompts": prompts,
            }
        )
        return {}

    def _m_assistant_threads_setTitle(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel_id", "thread_ts", "title")
        self.state.titles.append({k: params[k] for k in ("channel_id", "thread_ts", "title")})
        return {}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "user")
        self.state.ephemerals.append(
            {k: params.get(k) for k in ("channel", "user", "thread_ts", "text")}
        )
        return {"message_ts": self._next_ts()}

    def _m_views_publish(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "user_id", "view")
        view = params["view"]
        if isinstance(view, str):
            view = json.loads(view)
        self.state.views.append({"user_id": params["user_id"], "view": view})
        return {"view": {"id": "V" + uuid.uuid4().hex[:8].upper(), **view}}

    def _m_conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel", "")
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        return {"channel": {"id": channel, "name": self.channels[channel], "is_channel": True}}

    def _m_reactions_add(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "timestamp", "name")
        key = (params["channel"], params["timestamp"], params["name"])
        if key in self.state.reactions:
            raise SlackError("already_reacted")
        self.state.reactions.add(key)
        return {}

    def _m_reactions_remove(self, params: dict[str, Any]) -> dict[str, Any]:
        self._need(params, "channel", "timestamp", "name")
        key = (params["channel"], params["timestamp"], params["name"])
        if key not in self.state.reactions:
            raise SlackError("no_reaction")
        self.state.reactions.discard(key)
        return {}

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


# -- Slack → the service: signed requests and payloads ---------------------------------------


def signed_headers(
    body: str | bytes,
    secret: str = DEFAULT_SIGNING_SECRET,
    *,
    timestamp: int | None = None,
    content_type: str = "application/json",
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> dict[str, str]:
    """Headers Slack sends with an Events API or slash-command request, signed with `secret`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


_event_seq = itertools.count(1)


def new_ts() -> str:
    """A fresh, increasing Slack-style ts for a person's message."""
    return f"{int(time.time())}.{500000 + next(_event_seq):06d}"


def event_callback(
    event: Mapping[str, Any],
    *,
    team_id: str = "T0FAKE",
    api_app_id: str = "A0FAKE",
    event_id: str | None = None,
    enterprise_id: str | None = None,
    installation: Mapping[str, Any] | None = None,
    shared: bool = False,
) -> dict[str, Any]:
    """The Events API envelope around one event.

    `team_id` (and `enterprise_id`) say where the event happened; `authorizations[0]` is the
    installation it is delivered to — the same workspace unless `installation` overrides it
    (Slack Connect: `shared=True` and another org's `team_id`; an org-wide Grid install:
    `{"team_id": None, "enterprise_id": "E…", "is_enterprise_install": True}`).
    """
    authorization: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "user_id": "UBOT",
        "is_bot": True,
        "is_enterprise_install": False,
    }
    authorization.update(installation or {})
    body: dict[str, Any] = {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [authorization],
        "is_ext_shared_channel": shared,
    }
    if enterprise_id is not None:
        body["enterprise_id"] = enterprise_id
    return body


def app_mention(
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T0FAKE",
    **extra: Any,
) -> dict[str, Any]:
    """An `app_mention`; `extra` adds fields (`user_team`, `source_team` in Slack Connect)."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts or new_ts(),
        "team": team,
        "channel": channel,
        "event_ts": ts or new_ts(),
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


def message(
    text: str,
    *,
    user: str | None = "U1",
    channel: str = "C1",
    channel_type: str = "channel",
    ts: str | None = None,
    thread_ts: str | None = None,
    subtype: str | None = None,
    team: str = "T0FAKE",
    **extra: Any,
) -> dict[str, Any]:
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if user is not None:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    if subtype:
        event["subtype"] = subtype
    event.update(extra)
    return event


def slash_command(
    text: str,
    *,
    response_url: str,
    command: str = "/threadwise",
    user: str = "U1",
    channel: str = "C1",
    team: str = "T0FAKE",
    trigger_id: str | None = None,
    enterprise_id: str | None = None,
    org_install: bool = False,
) -> dict[str, str]:
    """A slash command's form fields (send `urlencode(...)` as the body).

    `team` is the caller's workspace (in a Slack Connect channel, possibly another org's);
    `enterprise_id` / `org_install` are what an Enterprise Grid org adds.
    """
    grid = {"enterprise_id": enterprise_id, "enterprise_name": "Grid"} if enterprise_id else {}
    return {
        **grid,
        "token": "legacy-verification-token",
        "team_id": team,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "directmessage" if channel.startswith("D") else "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0FAKE",
        "is_enterprise_install": "true" if org_install else "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().int % 10**12}",
    }


def assistant_thread_event(
    kind: str = "assistant_thread_started",
    *,
    user: str = "U1",
    channel: str = "D1",
    thread_ts: str | None = None,
    context_channel: str | None = "C1",
    team: str = "T0FAKE",
) -> dict[str, Any]:
    """`assistant_thread_started` / `assistant_thread_context_changed`: the pane was opened (or
    the person moved to another channel) with `context_channel` in view."""
    context: dict[str, Any] = {"team_id": team, "enterprise_id": None}
    if context_channel:
        context["channel_id"] = context_channel
    return {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "channel_id": channel,
            "thread_ts": thread_ts or new_ts(),
            "context": context,
        },
        "event_ts": new_ts(),
    }


def block_actions(
    message: Mapping[str, Any],
    value: str,
    *,
    channel: str,
    user: str = "U1",
    team: str = "T0FAKE",
    action_id: str = "threadwise_feedback",
) -> dict[str, Any]:
    """The interactivity payload of a click on a button of `message` (as Slack sends it: the
    message as posted, the clicked element's `value`). Send it as `form({"payload": json})`."""
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
            **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}),
        },
        "trigger_id": f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().int % 10**12}",
        "channel": {"id": channel, "name": "general"},
        "message": dict(message),
        "response_url": "https://hooks.slack.test/actions/fake",
        "actions": [
            {
                "type": "feedback_buttons",
                "action_id": action_id,
                "block_id": "fb",
                "value": value,
                "action_ts": new_ts(),
            }
        ],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def form(fields: Mapping[str, str]) -> str:
    return urlencode(fields)


# -- standalone ----------------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    users = json.loads(args.users) if args.users else {"U1": "Ann", "U2": "Bob"}
    slack = FakeSlack(host=args.host, port=args.port, token=args.token, users=users)
    await slack.start()
    print(f"READY {slack.api_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await slack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local fake of the Slack Web API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--users", help='JSON: {"U1": "Ann", ...}')
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- the core's side, for adapter tests that must not depend on the real responder -----------


class MemoryCache:
    """The `Cache` protocol in a dict (TTL recorded, not enforced)."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.ttls: dict[str, int] = {}
        self.gets = 0

    async def cache_get(self, key: str) -> str | None:
        self.gets += 1
        return self.data.get(key)

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        self.data[key] = value
        self.ttls[key] = ttl_seconds


class RecordingHandler:
    """A `MessageHandler` that records submissions and can run a scripted reply for each.

    `script(message, reply)` is an async function, e.g. one that calls `reply.typing()`, opens
    `reply.stream()`, appends and finishes. `wait_for(n)` waits for n submissions (and their
    scripts to finish).
    """

    def __init__(self, script: Callable[[Any, Any], Any] | None = None):
        self.script = script
        self.submitted: list[tuple[Any, Any]] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.errors: list[BaseException] = []
        self._changed = asyncio.Event()

    @property
    def messages(self) -> list[Any]:
        return [m for m, _ in self.submitted]

    def submit(self, message: Any, reply: Any) -> None:
        self.submitted.append((message, reply))
        if self.script is not None:
            self.tasks.append(asyncio.get_running_loop().create_task(self.handle(message, reply)))
        self._changed.set()

    async def handle(self, message: Any, reply: Any) -> None:
        if self.script is None:
            return
        try:
            await self.script(message, reply)
        except Exception as e:  # recorded for the test to inspect
            self.errors.append(e)

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.submitted) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{len(self.submitted)} of {n} messages submitted")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
        if self.tasks:
            await asyncio.wait_for(asyncio.gather(*self.tasks), timeout)
        return self.messages
