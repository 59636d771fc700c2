"""The Slack edge of Threadwise: a slack-bolt `AsyncApp`, its lifecycle, and how Slack reaches it.

HTTP mode mounts `POST /slack/events` on the shared aiohttp server (ingress.py checks each
request once before bolt sees it); Socket Mode (when an app token is set) connects out to Slack
instead. Either way every event is acknowledged at once — bolt acks Events API requests before
running a listener, and the listener only turns the event into an `IncomingMessage` and hands it
to the core with `handler.submit()` — so a slow model never makes Slack retry.

What the listeners do, per event (docs/spec.md §2):

- `app_mention`, `message` (listeners.py): `events.route()` drops bots, this bot, edits,
  deletions, joins and other subtypes, and channel chatter that neither mentions the bot nor
  replies in a thread; the rest becomes an `IncomingMessage` (display names from `users.info`,
  cached) answered through a `SlackReplyTarget` in the right thread. The same post delivered
  twice (as `app_mention` and `message`, or retried) becomes two messages with one conversation
  and one `message_id` (the post's `ts`): the core claims that pair once and answers once.
- any other event: acknowledged and counted as ignored.
- a slash command (`/threadwise ARGS`, slash.py): acknowledged, then `!ARGS` answered
  ephemerally.

Every message and command belongs to the app's installation (`installation_workspace()`), not
to the workspace it was written in: in a Slack Connect channel that is another organisation's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp

from adapters.slack import assistant, home, listeners, slash
from adapters.slack import feedback as slack_feedback
from adapters.slack.api import DEFAULT_API_URL, error_code, log_failure, make_client
from adapters.slack.assistant import Pane
from adapters.slack.files import SlackFiles
from adapters.slack.identity import BotIdentity
from adapters.slack.ingress import Admitted, admit, bolt_request
from adapters.slack.intake import Intake, provide
from adapters.slack.reply import SlackReplies
from adapters.slack.users import UserNames
from bot.commands import Commands
from bot.feedback import Feedback
from bot.messages import Cache, MessageHandler
from bot.metrics import Metrics
from bot.suggestions import SuggestedPrompts

log = logging.getLogger("threadwise.slack")

EVENTS_PATH = "/slack/events"
SOCKET_CONNECT_TIMEOUT_SECONDS = 30.0
CLOSE_GRACE_SECONDS = 5.0
READY_PROBE_SECONDS = 2.0  # a readiness probe's own budget for asking auth.test again


class _TokenNotices(logging.Filter):
    """Drops bolt's start-up notices that SLACK_BOT_TOKEN "will be unused" / "ignored".

    bolt reads SLACK_BOT_TOKEN from the environment by itself, where deployments keep it, and
    warns that it goes unused next to a `client` and an `authorize` — which here serve that very
    token (`BotIdentity`). Every other bolt record passes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("token" in text and ("will be unused" in text or "will be ignored" in text))


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("threadwise.slack.bolt")
    if not any(isinstance(f, _TokenNotices) for f in logger.filters):
        logger.addFilter(_TokenNotices())
    return logger


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
        feedback: Feedback | None = None,
        suggestions: SuggestedPrompts | None = None,
        history_ttl: int = 604_800,
        commands: Commands | None = None,
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
        self.replies = SlackReplies(
            self.client, metrics, feedback=feedback is not None and feedback.enabled
        )
        self.names = UserNames(self.client, cache)
        self._socket: Any = None  # AsyncSocketModeHandler, made in start() (it needs a loop)
        self.identity = BotIdentity(self.client)  # one auth.test for start-up and bolt
        # bolt's client carries no token: bolt takes the token from `authorize` (bolt warns
        # that a token next to `authorize` is ignored); the session is shared in start().
        self._bolt_client = make_client(None, api_url or DEFAULT_API_URL)
        self.intake = Intake(
            handler=handler,
            replies=self.replies,
            names=self.names,
            metrics=metrics,
            thread_followups=thread_followups,
            feedback=feedback,
            pane=Pane(self.client, cache, suggestions or SuggestedPrompts(cache), history_ttl),
            commands=commands,
            files=SlackFiles(self.client, bot_token=bot_token, api_url=api_url or DEFAULT_API_URL),
        )

        self.app = AsyncApp(
            name="threadwise",
            client=self._bolt_client,
            authorize=self.identity.authorizer(),
            logger=_bolt_logger(),
            # bolt never sees the secret: handle_http has checked the signature (ingress.py)
            # before bolt gets the request, and Socket Mode requests carry none.
            signing_secret="",
            request_verification_enabled=False,
            # route() drops this bot's own messages itself, so they are counted as ignored.
            ignoring_self_events_enabled=False,
            process_before_response=False,  # ack first, then run the listener
        )
        provide(self.app, self.intake)
        assistant.register(self.app)  # before listeners' catch-all
        slack_feedback.register(self.app)
        home.register(self.app)
        listeners.register(self.app)
        slash.register(self.app)

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
        self._bolt_client.session = self.client.session
        try:
            await self._start()
        except BaseException:
            await self._close_session()
            raise

    async def _start(self) -> None:
        try:
            auth = await self.identity.get()
            log.info(
                "slack connected",
                extra={
                    "team_id": auth.get("team_id"),
                    "enterprise_id": auth.get("enterprise_id"),
                    "is_enterprise_install": auth.get("is_enterprise_install"),
                    "bot_user_id": auth.get("user_id"),
                },
            )
        except Exception as e:
            code = log_failure("auth.test", e, level=logging.ERROR)
            if code in ("invalid_auth", "not_authed", "account_inactive", "token_revoked"):
                raise RuntimeError(f"SLACK_BOT_TOKEN: Slack refused it ({code})") from e
        if self.socket_mode:
            await self._connect_socket()

    async def _connect_socket(self) -> None:
        from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

        self._socket = AsyncSocketModeHandler(
            self.app, self._app_token, logger=logging.getLogger("threadwise.slack.socket")
        )
        try:
            # The client's own reconnect step: it opens a connection URL first (raising when
            # Slack refuses the app token), then connects. `connect_async()` would retry a
            # refused token forever; this way a wrong token fails start-up at once.
            await asyncio.wait_for(
                self._socket.client.connect_to_new_endpoint(force=True),
                timeout=SOCKET_CONNECT_TIMEOUT_SECONDS,
            )
        except Exception as e:
            await self._socket.close_async()
            self._socket = None
            if isinstance(e, aiohttp.ClientConnectionError | OSError | TimeoutError):
                raise RuntimeError(
                    f"SLACK_API_URL: could not reach Slack at {self.client.base_url} "
                    f"({error_code(e)})"
                ) from e
            raise RuntimeError(
                f"SLACK_APP_TOKEN: could not open a Socket Mode connection ({error_code(e)})"
            ) from e
        log.info("slack socket mode connected")

    async def stop(self) -> None:
        """Stop intake (Socket Mode too); replies in flight keep the Web API client."""
        if self._socket is not None:
            try:
                await self._socket.close_async()
            except Exception as e:
                log.warning("socket mode close failed: %s", type(e).__name__)
            self._socket = None
        # Events acknowledged but not yet handed to the core (a name lookup in progress).
        if self.intake.pending:
            await asyncio.wait(set(self.intake.pending), timeout=CLOSE_GRACE_SECONDS)

    async def close(self) -> None:
        await self.stop()
        await self._close_session()

    async def _close_session(self) -> None:
        session, self.client.session = self.client.session, None
        self._bolt_client.session = None
        if session is not None and not session.closed:
            await session.close()

    # -- HTTP --------------------------------------------------------------------------------

    async def handle_http(self, request: web.Request) -> web.StreamResponse:
        """`POST /slack/events`: 401 unsigned/stale, 400 malformed, else bolt's (fast) answer."""
        admitted = await admit(request, self._signing_secret)
        if not isinstance(admitted, Admitted):
            return admitted
        if admitted.needs_identity and not await self._ready():
            # Without the bot's identity an event cannot be handled; ask Slack to retry later
            # rather than acknowledging it and dropping it.
            return web.json_response({"error": "temporarily unavailable"}, status=503)
        bolt_req = bolt_request(admitted, request)
        if isinstance(bolt_req, web.Response):
            return bolt_req
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

    async def ready(self) -> bool:
        """For `/readyz`: not ready until auth.test has answered (asked again, briefly)."""
        if self.identity.auth is not None:
            return True
        try:
            async with asyncio.timeout(READY_PROBE_SECONDS):
                return await self._ready()
        except TimeoutError:
            return False

    async def _ready(self) -> bool:
        """Whether the bot knows who it is (auth.test), asking Slack when it does not yet."""
        if self.identity.auth is None:
            try:
                await self.identity.get()
            except Exception as e:
                log_failure("auth.test", e, level=logging.ERROR)
                return False
        return True
