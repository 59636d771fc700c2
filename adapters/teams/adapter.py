"""The Teams edge: POST /api/messages on the shared aiohttp server.

A request is authenticated (Bot Framework JWT, unless anonymous mode), parsed into the Agents
SDK's `Activity`, checked against the trust rules (`trust.py`: a channel outside
TEAMS_ALLOWED_CHANNELS or a `serviceUrl` the bot may not post to is a 403, a token that does not
vouch for the `serviceUrl` a 401), answered 200 at once, and handed on: a `message` for the bot
becomes an `IncomingMessage` submitted to the core's responder with a `TeamsReplyTarget` that
posts the answer later through the connector; a `conversationUpdate` that adds the bot gets a
one-line welcome, once per conversation. Everything else is acknowledged and ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging

from aiohttp import web
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import AuthenticationConstants, RestChannelServiceClientFactory
from pydantic import ValidationError

from adapters.teams import feedback as teams_feedback
from adapters.teams import trust
from adapters.teams.attachments import TeamsFiles
from adapters.teams.auth import (
    RequestAuthenticator,
    Unauthorized,
    auth_configuration,
    connection_manager,
)
from adapters.teams.connector import ConnectorError, Outbound
from adapters.teams.mapping import bot_ids, is_personal, to_incoming
from adapters.teams.reply import Destination, TeamsReplyTarget
from bot.feedback import Feedback
from bot.messages import Cache, MessageHandler
from bot.metrics import Metrics

log = logging.getLogger("threadwise.teams")

ROUTE = "/api/messages"
WELCOME_TTL_SECONDS = 400 * 24 * 3600  # a reinstall after a year may say hello again
WELCOME_PERSONAL = (
    "Hi, I'm Threadwise: write to me here and I'll answer with the team's AI assistant; "
    "`!help` lists commands."
)
WELCOME_SHARED = (
    "Hi, I'm Threadwise: @mention me in a message and I'll answer in that thread; "
    "`!help` lists commands."
)
_KNOWN_KINDS = {
    "message",
    "conversationUpdate",
    "installationUpdate",
    "invoke",
    "messageReaction",
    "messageUpdate",
    "messageDelete",
    "event",
    "typing",
    "endOfConversation",
}


class BadRequest(Exception):
    """A malformed body: 400."""


class TeamsAdapter:
    """Microsoft Teams through the Microsoft 365 Agents SDK (see the package docstring)."""

    name = "teams"

    def __init__(
        self,
        *,
        app_id: str | None,
        app_password: str | None,
        tenant_id: str | None,
        app_type: str,
        allow_anonymous: bool,
        handler: MessageHandler,
        cache: Cache,
        metrics: Metrics,
        allowed_callers: frozenset[str] = frozenset(),
        allowed_channels: frozenset[str] = frozenset({"msteams"}),
        feedback: Feedback | None = None,
    ) -> None:
        self.app_id = app_id or None
        self.feedback = feedback
        _quiet_sdk_logs()
        self.handler = handler
        self.cache = cache
        self.metrics = metrics
        self.allowed_channels = frozenset(c.lower() for c in allowed_channels)
        self.anonymous = self.app_id is None
        if self.anonymous:
            if not allow_anonymous:
                raise ValueError(
                    "MICROSOFT_APP_ID: not set; Teams needs the bot's app id "
                    "(or TEAMS_ALLOW_ANONYMOUS=true for local test clients)"
                )
            config = None
            self.authenticator: RequestAuthenticator | None = None
            log.warning(
                "TEAMS ANONYMOUS MODE: MICROSOFT_APP_ID is empty and TEAMS_ALLOW_ANONYMOUS is "
                "on, so POST %s accepts requests WITHOUT authentication and replies without "
                "credentials (to loopback service URLs only; no Teams user is an admin). Use "
                "this only with local test clients (Agents Playground), never on a reachable "
                "address.",
                ROUTE,
            )
        else:
            config = auth_configuration(
                app_id=self.app_id,
                app_password=app_password,
                tenant_id=tenant_id,
                app_type=app_type,
            )
            self.authenticator = RequestAuthenticator(config, allowed_callers)
            if allow_anonymous:
                log.warning("TEAMS_ALLOW_ANONYMOUS is ignored: MICROSOFT_APP_ID is set")
        self._connections = connection_manager(config)
        factory = RestChannelServiceClientFactory(self._connections)
        self.files = TeamsFiles(self._bot_token, anonymous=self.anonymous)
        self.outbound = Outbound(
            factory, app_id=self.app_id, anonymous=self.anonymous, metrics=metrics
        )
        self._closing = False
        self._tasks: set[asyncio.Task] = set()
        self._welcoming: set[str] = set()

    # -- the Adapter protocol

    def routes(self) -> list[str]:
        return [f"POST {ROUTE}" + (" (anonymous)" if self.anonymous else "")]

    def mount(self, app: web.Application) -> None:
        app.router.add_post(ROUTE, self.handle_request)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        """Shutdown begins: new requests get 503; replies in flight keep posting."""
        self._closing = True

    async def close(self) -> None:
        """After the replies in flight: finish welcomes, release leftover connector clients."""
        self._closing = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)
        await self.outbound.aclose()

    # -- HTTP

    async def handle_request(self, request: web.Request) -> web.Response:
        if self._closing:
            return web.json_response({"error": "shutting down"}, status=503)
        identity = None
        if self.authenticator is not None:
            try:
                identity = await self.authenticator.authenticate(
                    request.headers.get("Authorization")
                )
            except Unauthorized as exc:
                return self._unauthorized(request, str(exc))
        try:
            activity = await _read_activity(request)
        except BadRequest as exc:
            log.warning("bad Teams request: %s", exc)
            return web.json_response({"error": "malformed activity"}, status=400)
        if not trust.channel_allowed(activity.channel_id, self.allowed_channels):
            channel = str(activity.channel_id or "")[:40]
            return self._forbidden(f"channel {channel!r} is not in TEAMS_ALLOWED_CHANNELS")
        if self.authenticator is not None and identity is not None:
            try:
                self.authenticator.check_service_url(identity, activity.service_url)
            except Unauthorized as exc:
                return self._unauthorized(request, str(exc))
        if activity.service_url and not trust.service_url_allowed(
            activity.service_url, anonymous=self.anonymous
        ):
            # Every reply would carry the bot's token there (or, anonymous, reach another host).
            allowed = "a loopback address" if self.anonymous else "a Bot Framework service host"
            host = trust.host_of(activity.service_url)
            return self._forbidden(f"serviceUrl host {host!r} is not {allowed}")
        kind = activity.type if activity.type in _KNOWN_KINDS else "other"
        self.metrics.events.labels("teams", kind).inc()
        if activity.type == "message":
            self._on_message(activity)
        elif activity.type == "conversationUpdate":
            self._on_conversation_update(activity)
        elif activity.type == "invoke":
            # Feedback on answers; no cards or message extensions. Teams expects a response.
            return await teams_feedback.on_invoke(activity, self.feedback, anonymous=self.anonymous)
        return web.Response(status=200)

    async def _bot_token(self) -> str | None:
        """The bot's Bot Framework token (as for replies), for pasted images on the service host."""
        if self.anonymous:
            return None
        scope = AuthenticationConstants.AGENTS_SDK_SCOPE
        try:
            provider = self._connections.get_default_connection()
            return await provider.get_access_token(scope, [scope + "/.default"])
        except Exception as exc:
            log.warning("no bot token for an attachment: %s", type(exc).__name__)
            return None

    def _unauthorized(self, request: web.Request, reason: str) -> web.Response:
        self.metrics.errors.labels("teams_auth").inc()
        log.warning("Teams request rejected (401): %s", reason)
        return web.json_response(
            {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )

    def _forbidden(self, reason: str) -> web.Response:
        self.metrics.errors.labels("teams_auth").inc()
        log.warning("Teams request rejected (403): %s", reason)
        return web.json_response({"error": "forbidden"}, status=403)

    # -- activities

    def _target(self, activity: Activity, *, streaming: bool) -> TeamsReplyTarget:
        destination = Destination(activity.get_conversation_reference(), activity.id)
        return TeamsReplyTarget(
            self.outbound,
            destination,
            streaming=streaming,
            metrics=self.metrics,
            feedback=self.feedback is not None and self.feedback.enabled,
        )

    def _on_message(self, activity: Activity) -> None:
        message = to_incoming(activity, self.app_id)
        if message is None:
            log.debug("Teams message not for the bot; ignored")
            return
        if self.anonymous:
            # Nothing vouches for `from` in anonymous mode: a user id with a colon matches no
            # BOT_ADMINS entry (an entry's user part never holds one), so no one is an admin.
            message = dataclasses.replace(message, user_id=f"anonymous:{message.user_id}")
        attachments = self.files.attachments(activity)
        if attachments:
            message = dataclasses.replace(message, attachments=attachments)
        streaming = message.is_dm and str(activity.channel_id or "") == "msteams"
        self.handler.submit(message, self._target(activity, streaming=streaming))

    def _on_conversation_update(self, activity: Activity) -> None:
        mine = bot_ids(activity, self.app_id)
        added = activity.members_added or []
        if not any(m.id and m.id.lower() in mine for m in added):
            return
        task = asyncio.get_running_loop().create_task(self._welcome(activity))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _welcome(self, activity: Activity) -> None:
        conversation_id = activity.conversation.id if activity.conversation else ""
        if conversation_id in self._welcoming:
            return  # the same event delivered again while we are still on it
        self._welcoming.add(conversation_id)
        try:
            if await self._first_time(f"teams:welcomed:{conversation_id}"):
                await self._send_welcome(activity)
        finally:
            self._welcoming.discard(conversation_id)

    async def _first_time(self, key: str) -> bool:
        """Claim a once-per-conversation marker (SET NX: one replica wins)."""
        try:
            return await self.cache.cache_add(key, "1", WELCOME_TTL_SECONDS)
        except Exception as exc:
            log.warning("welcome skipped, cache unavailable: %s", type(exc).__name__)
            return False

    async def _send_welcome(self, activity: Activity) -> None:
        text = WELCOME_PERSONAL if is_personal(activity) else WELCOME_SHARED
        destination = Destination(activity.get_conversation_reference(), None)
        try:
            async with self.outbound.client(destination.service_url) as client:
                await self.outbound.post(client, destination.message(text))
        except ConnectorError as exc:
            self.metrics.errors.labels("teams_connector").inc()
            log.error("welcome not delivered: %s", exc)
        else:
            log.info("welcomed a new conversation")


def _quiet_sdk_logs() -> None:
    """The SDK logs every connector call and its connection table at INFO; keep that for DEBUG.

    Only when nobody configured the `microsoft_agents` logger and Threadwise is not debugging.
    """
    sdk = logging.getLogger("microsoft_agents")
    if sdk.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        sdk.setLevel(logging.WARNING)


async def _read_activity(request: web.Request) -> Activity:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise BadRequest("body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body is not a JSON object")
    try:
        activity = Activity.model_validate(body)
    except (ValidationError, ValueError, TypeError, RecursionError):
        raise BadRequest("body is not a Bot Framework activity") from None
    if not activity.type or activity.conversation is None or not activity.conversation.id:
        raise BadRequest("activity has no type or conversation id")
    if activity.type in ("message", "conversationUpdate") and not activity.service_url:
        raise BadRequest("activity has no serviceUrl")
    return activity
