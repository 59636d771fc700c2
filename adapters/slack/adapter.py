"""The Slack edge of Threadwise: a slack-bolt `AsyncApp` with a few small listeners.

HTTP mode mounts `POST /slack/events` on the shared aiohttp server; Socket Mode (when an app
token is set) connects out to Slack instead. Either way every event is acknowledged at once —
bolt acks Events API requests before running a listener, and the listener only turns the event
into an `IncomingMessage` and hands it to the core with `handler.submit()` — so a slow model
never makes Slack retry.

What the listeners do, per event (SPEC.md §2):

- `app_mention`, `message`: `events.route()` drops bots, this bot, edits, deletions, joins and
  other subtypes, and channel chatter that neither mentions the bot nor replies in a thread;
  the rest becomes an `IncomingMessage` (display names from `users.info`, cached) answered
  through a `SlackReplyTarget` in the right thread. The same post delivered twice (as
  `app_mention` and `message`, or retried) yields the same `dedupe_key`; the core answers once.
- any other event: acknowledged and counted as ignored.
- a slash command (`/threadwise ARGS`): acknowledged, then `!ARGS` answered ephemerally.

Every message and command belongs to the app's installation (`installation_workspace()`), not
to the workspace it was written in: in a Slack Connect channel that is another organisation's.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest

from adapters.slack.api import DEFAULT_API_URL, error_code, log_failure, make_client
from adapters.slack.events import mentioned_users, readable_text, route
from adapters.slack.reply import SlackReplies, SlackReplyTarget, SlashReplyTarget
from adapters.slack.users import UserNames
from bot.messages import Cache, IncomingMessage, MessageHandler, conversation_key
from bot.metrics import Metrics

log = logging.getLogger("threadwise.slack")

EVENTS_PATH = "/slack/events"
SIGNATURE_MAX_AGE_SECONDS = 300
SOCKET_CONNECT_TIMEOUT_SECONDS = 30.0
CLOSE_GRACE_SECONDS = 5.0


def signature_ok(
    secret: str, raw: bytes, timestamp: str | None, signature: str | None, now: float
) -> bool:
    """Slack's v0 request signature over the raw bytes, with a 5-minute timestamp window.

    Works on bytes (a body that is not UTF-8 is still checked, then refused as malformed).
    """
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > SIGNATURE_MAX_AGE_SECONDS:
        return False
    base = b"v0:" + timestamp.encode("ascii", "replace") + b":" + raw
    expected = "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def parse_body(text: str, content_type: str | None) -> dict[str, Any]:
    """The request body as bolt will see it: JSON (events) or a form (slash commands).

    Raises ValueError when it is neither.
    """
    if (content_type or "").split(";")[0].strip() == "application/json" or text.lstrip().startswith(
        "{"
    ):
        body = json.loads(text)
    else:
        form = dict(parse_qsl(text, keep_blank_values=True))
        body = json.loads(form["payload"]) if "payload" in form else form
    if not isinstance(body, dict):
        raise ValueError("body is not an object")
    return body


def installation_workspace(context: AsyncBoltContext) -> str:
    """The workspace a message or command belongs to (prompts, memory, usage): the installation.

    In a Slack Connect channel an event's `team_id`, and a slash command's, is the workspace the
    message came from — another organisation's, or another workspace of a Grid org. bolt's
    authorize result is the installation the request was delivered to (auth.test of the bot
    token; for events the same as `authorizations[0]`), whoever wrote the message, so events,
    slash commands and their replies all resolve one workspace (only a streamed reply's
    `recipient_team_id` is the recipient's own team, as Slack asks). An org-wide Enterprise Grid
    install has no team of its own (`authorizations[0].team_id` is null and one token serves
    every workspace of the org): its workspace is the org's enterprise id (`E…`), so a
    `--workspace` prompt covers the whole org. In an ordinary workspace this is the event's
    `team_id`, as it always was, so stored conversations keep their keys.
    """
    auth = context.authorize_result
    org = _slack_id(context.enterprise_id) or _slack_id(auth.enterprise_id if auth else None)
    if context.is_enterprise_install and org:
        return org
    installed = _slack_id(auth.team_id if auth else None)
    return installed or _slack_id(context.team_id) or org or ""


def _slack_id(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def malformed(body: dict[str, Any]) -> str | None:
    """Why a (signed) body is not something Slack sends, or None when it looks right."""
    kind = body.get("type")
    if body.get("ssl_check"):
        return None
    if "command" in body:
        return None if isinstance(body.get("command"), str) else "command is not a string"
    if not isinstance(kind, str) or not kind:
        return "no type"
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event"
    if kind == "url_verification" and not isinstance(body.get("challenge"), str):
        return "url_verification without a challenge"
    return None


class SlackAdapter:
    """Slack for Threadwise (the `Adapter` protocol in bot/messages.py)."""

    name = "slack"

    def __init__(
        self,
        *,
        bot_token: str,
        signing_secret: str | None,
        app_token: str | None,
        api_url: str,
        thread_followups: bool,
        handler: MessageHandler,
        cache: Cache,
        metrics: Metrics,
    ) -> None:
        if not bot_token:
            raise ValueError("SLACK_BOT_TOKEN: needed to talk to Slack")
        if not app_token and not signing_secret:
            raise ValueError(
                "SLACK_SIGNING_SECRET: HTTP mode needs it (or set SLACK_APP_TOKEN for Socket Mode)"
            )
        self.socket_mode = bool(app_token)
        self.thread_followups = thread_followups
        self.handler = handler
        self.metrics = metrics
        self._app_token = app_token
        self._signing_secret = signing_secret or ""
        self.client = make_client(bot_token, api_url or DEFAULT_API_URL)
        self.replies = SlackReplies(self.client, metrics)
        self.names = UserNames(self.client, cache)
        self._socket: Any = None  # AsyncSocketModeHandler, made in start() (it needs a loop)
        self._pending: set[asyncio.Task[Any]] = set()
        # Per conversation: the newest event not yet handed to the core (arrival order).
        self._arrivals: dict[str, asyncio.Future[None]] = {}
        self._closing = False
        self._auth: Any = None  # auth.test's answer, once Slack has given it

        self.app = AsyncApp(
            name="threadwise",
            client=self.client,
            signing_secret=self._signing_secret,
            # Verified here first (401 before any parsing), and by bolt again in HTTP mode.
            request_verification_enabled=not self.socket_mode,
            # route() drops this bot's own messages itself, so they are counted as ignored.
            ignoring_self_events_enabled=False,
            process_before_response=False,  # ack first, then run the listener
        )
        # Listener order matters: bolt runs the first listener that matches.
        self.app.event("app_mention")(self._on_message_event)
        self.app.event("message")(self._on_message_event)
        self.app.event(re.compile(r".*"))(self._on_other_event)
        # Every slash command this app receives is its own (/threadwise, or a renamed copy).
        self.app.command(re.compile(r".*"))(self._on_command)

    # -- Adapter -----------------------------------------------------------------------------

    def routes(self) -> list[str]:
        if self.socket_mode:
            return ["Socket Mode (outbound WebSocket to Slack)"]
        return [f"POST {EVENTS_PATH}"]

    def mount(self, app: web.Application) -> None:
        if not self.socket_mode:
            app.router.add_post(EVENTS_PATH, self.handle_http)

    async def start(self) -> None:
        if self.client.session is None or self.client.session.closed:
            # One pooled HTTP session for every Web API call: without it slack_sdk opens (and
            # closes) a new session, TCP and TLS connection per call.
            self.client.session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.client.timeout)
            )
        try:
            await self._start()
        except BaseException:
            await self._close_session()
            raise

    async def _start(self) -> None:
        try:
            self._auth = await self.client.auth_test()
            log.info(
                "slack connected",
                extra={
                    "team_id": self._auth.get("team_id"),
                    "enterprise_id": self._auth.get("enterprise_id"),
                    "is_enterprise_install": self._auth.get("is_enterprise_install"),
                    "bot_user_id": self._auth.get("user_id"),
                },
            )
        except Exception as e:
            code = log_failure("auth.test", e, level=logging.ERROR)
            if code in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
                raise RuntimeError(f"SLACK_BOT_TOKEN: Slack refused it ({code})") from e
        if self.socket_mode:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(
                self.app, self._app_token, logger=logging.getLogger("threadwise.slack.socket")
            )
            try:
                # Open the first connection URL here, so a wrong app token fails start-up at
                # once (the client itself would retry forever), then let the client connect.
                opened = await self.client.apps_connections_open(app_token=self._app_token)
                self._socket.client.wss_uri = opened["url"]
                await asyncio.wait_for(
                    self._socket.connect_async(), timeout=SOCKET_CONNECT_TIMEOUT_SECONDS
                )
            except Exception as e:
                await self._socket.close_async()
                self._socket = None
                raise RuntimeError(
                    f"SLACK_APP_TOKEN: could not open a Socket Mode connection ({error_code(e)})"
                ) from e
            log.info("slack socket mode connected")

    async def stop(self) -> None:
        """Stop intake (Socket Mode too); replies in flight keep the Web API client."""
        self._closing = True
        if self._socket is not None:
            try:
                await self._socket.close_async()
            except Exception as e:
                log.warning("socket mode close failed: %s", type(e).__name__)
            self._socket = None
        # Events acknowledged but not yet handed to the core (a name lookup in progress).
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=CLOSE_GRACE_SECONDS)

    async def close(self) -> None:
        await self.stop()
        await self._close_session()

    async def _close_session(self) -> None:
        session, self.client.session = self.client.session, None
        if session is not None and not session.closed:
            await session.close()

    # -- HTTP --------------------------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        """`POST /slack/events`: 401 unsigned/stale, 400 malformed, else bolt's (fast) answer."""
        raw = await request.read()
        if not signature_ok(
            self._signing_secret,
            raw,
            request.headers.get("X-Slack-Request-Timestamp"),
            request.headers.get("X-Slack-Signature"),
            time.time(),
        ):
            log.warning("slack request refused: bad signature or stale timestamp")
            return web.json_response({"error": "invalid signature"}, status=401)
        try:
            text = raw.decode("utf-8")
            body = parse_body(text, request.headers.get("Content-Type"))
        except (UnicodeDecodeError, ValueError, KeyError, RecursionError) as e:
            # RecursionError: JSON nested deeper than the parser goes (a few KB of "[[[[").
            log.warning("slack request refused: malformed body (%s)", type(e).__name__)
            return web.json_response({"error": "malformed body"}, status=400)
        problem = malformed(body)
        if problem:
            log.warning("slack request refused: %s", problem)
            return web.json_response({"error": "malformed body"}, status=400)
        if body.get("type") == "app_rate_limited":
            log.warning("slack is rate-limiting event deliveries to this app")
            return web.Response(status=200)
        if not (
            "command" in body
            or body.get("ssl_check")
            or body.get("type") in ("event_callback", "url_verification")
        ):
            # Interactivity and the like: the manifest enables none, nothing here answers it.
            log.debug("slack request of type %s acknowledged unhandled", body.get("type"))
            return web.Response(status=200)
        if body.get("type") not in ("url_verification", "ssl_check") and not await self._ready():
            # Without the bot's identity an event cannot be handled; ask Slack to retry later
            # rather than acknowledging it and dropping it.
            return web.json_response({"error": "temporarily unavailable"}, status=503)

        try:
            bolt_req = AsyncBoltRequest(
                body=text, query=request.query_string, headers=dict(request.headers)
            )
            if bolt_req.body != body:
                # bolt's parser takes any form body containing "payload" for an interactivity
                # payload; give it the body as Slack meant it.
                bolt_req.body = body
                bolt_req.context = build_async_context(AsyncBoltContext({}), body)
        except (TypeError, AttributeError, KeyError, ValueError) as e:
            # bolt's context extraction assumes Slack's shapes (e.g. `user` an object or id)
            log.warning("slack request refused: malformed body (%s)", type(e).__name__)
            return web.json_response({"error": "malformed body"}, status=400)
        try:
            resp = await self.app.async_dispatch(bolt_req)
        except Exception:
            log.exception("slack request failed")
            return web.json_response({"error": "temporarily unavailable"}, status=503)
        if resp.status >= 500:
            # bolt answers 500 when it cannot authorize (Slack unreachable): ask Slack to retry.
            return web.json_response({"error": "temporarily unavailable"}, status=503)
        if resp.status == 404:
            return web.Response(status=200)  # nothing here for it; acknowledged, not retried
        return await to_aiohttp_response(resp)

    async def _ready(self) -> bool:
        """Whether the bot knows who it is (auth.test), asking Slack when it does not yet."""
        if self._auth is None:
            try:
                self._auth = await self.client.auth_test()
            except Exception as e:
                log_failure("auth.test", e, level=logging.ERROR)
                return False
        return True

    # -- listeners ---------------------------------------------------------------------------

    def _track(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _on_message_event(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, request
    ) -> None:
        self._track()
        try:
            await self._handle_message_event(body, event, context, request)
        except Exception:
            self.metrics.errors.labels("slack_event").inc()
            log.exception("slack event handling failed")

    async def _handle_message_event(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext, request
    ) -> None:
        bot_user_id = context.bot_user_id
        decision = route(
            event,
            bot_user_id=bot_user_id,
            bot_id=context.bot_id,
            thread_followups=self.thread_followups,
        )
        self.metrics.events.labels("slack", decision.kind).inc()
        if not decision.answer:
            log.debug("slack event ignored: %s", decision.reason)
            return
        retry = (request.headers.get("x-slack-retry-num") or [None])[0] if request else None
        if retry:
            log.info("slack redelivered an event", extra={"retry_num": retry})
        team = installation_workspace(context)
        user = event["user"]
        raw_text = event.get("text") or ""
        # Messages of one conversation go to the core in the order they arrived, although the
        # name lookups below take longer for some people (a cache miss) than for others.
        key = conversation_key("slack", team, event["channel"], decision.thread)
        before = self._arrivals.get(key)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._arrivals[key] = mine
        try:
            names = await self.names.names(
                team, [user, *mentioned_users(raw_text, exclude=bot_user_id)]
            )
            if before is not None:
                await before
            self._submit_message(body, event, decision, team, user, raw_text, names, bot_user_id)
        finally:
            mine.set_result(None)
            if self._arrivals.get(key) is mine:
                del self._arrivals[key]

    def _submit_message(
        self, body, event, decision, team: str, user: str, raw_text: str, names, bot_user_id
    ) -> None:
        message = IncomingMessage(
            platform="slack",
            workspace=team,
            channel=event["channel"],
            thread=decision.thread,
            user_id=user,
            user_name=names.get(user, user),
            text=readable_text(raw_text, bot_user_id=bot_user_id, names=names),
            message_id=event["ts"],
            is_dm=decision.is_dm,
            mentions_bot=decision.mentions_bot,
            event_id=body.get("event_id"),
        )
        reply = SlackReplyTarget(
            self.replies,
            channel=event["channel"],
            thread_ts=decision.thread,
            message_ts=event["ts"],
            # Streaming wants the team the *recipient* belongs to: another org's in Slack Connect.
            team_id=str(event.get("user_team") or event.get("team") or team) or None,
            user_id=user,
        )
        self.handler.submit(message, reply)

    async def _on_other_event(self, event: dict[str, Any]) -> None:
        self.metrics.events.labels("slack", "ignored").inc()
        log.debug("slack event ignored: %s", event.get("type"))

    async def _on_command(self, ack, command: dict[str, Any], respond, context) -> None:
        await ack()  # an empty ack shows nothing; the answer follows through response_url
        self._track()
        try:
            await self._handle_command(command, respond, context)
        except Exception:
            self.metrics.errors.labels("slack_event").inc()
            log.exception("slack command handling failed")

    async def _handle_command(self, command: dict[str, Any], respond, context) -> None:
        self.metrics.events.labels("slack", "slash_command").inc()
        user = command.get("user_id")
        channel = command.get("channel_id")
        if not user or not channel:
            log.warning("slack command without user or channel ignored")
            return
        team = installation_workspace(context)  # the payload's team_id is the caller's workspace
        bot_user_id = context.bot_user_id
        raw_args = command.get("text") or ""
        names = await self.names.names(
            team, [user, *mentioned_users(raw_args, exclude=bot_user_id)]
        )
        args = readable_text(raw_args, bot_user_id=bot_user_id, names=names)
        if args.startswith("!"):
            args = args[1:].lstrip()
        message = IncomingMessage(
            platform="slack",
            workspace=team,
            channel=channel,
            thread=None,
            user_id=user,
            user_name=names.get(user, user),
            text="!" + (args or "help"),
            message_id=command.get("trigger_id") or f"slash-{uuid.uuid4().hex}",
            is_dm=channel.startswith("D") or command.get("channel_name") == "directmessage",
            mentions_bot=True,
            event_id=None,
        )
        self.handler.submit(message, SlashReplyTarget(respond, self.replies))
