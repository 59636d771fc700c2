"""Posting to the Bot Framework connector: shared clients and Teams-appropriate retries.

Replies are produced after the HTTP request that brought the message has been acknowledged (a
model can take a minute; Bot Framework wants an answer in seconds), so every post is
proactive-style: a connector client for the activity's `serviceUrl` from the SDK's
`RestChannelServiceClientFactory` (token from the SDK's MSAL connection, or none in anonymous
mode), then `reply_to_activity` into the conversation id (for channels it carries `;messageid=`,
so the reply lands in the same reply chain). No client is made for a service URL the bot may
not post to (`trust.service_url_allowed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import (
    AuthenticationConstants,
    ChannelServiceClientFactoryBase,
    ClaimsIdentity,
)
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.teams import trust
from bot.metrics import Metrics

log = logging.getLogger("threadwise.teams")


class ConnectorError(Exception):
    """A post the connector refused (after retries) or could not be reached for."""

    def __init__(self, status: int | None, code: str) -> None:
        super().__init__(f"{status or 'no response'} {code}".strip())
        self.status = status
        self.code = code


class StreamRejected(ConnectorError):
    """403 ContentStreamNotAllowed: the stream was stopped by the user, expired, or is over."""


class ServiceUrlRefused(ConnectorError):
    """The service URL is not one the bot may post to (`trust.service_url_allowed`)."""


def _error_code(body: str | None) -> str:
    try:
        data = json.loads(body or "")
    except ValueError:
        return ""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return error["code"]
    return ""


def _retry_after(headers) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass(slots=True)
class _Pooled:
    """A shared connector client: when it must be replaced, and how many replies hold it."""

    service_url: str
    client: ConnectorClientBase
    expires: float
    users: int = 0
    retired: bool = False


class Outbound:
    """Connector clients from the SDK's factory, and posts with Teams-appropriate retries.

    429 → wait `Retry-After` (or back off) and retry; 5xx and network errors → a couple of
    quick retries; 403 ContentStreamNotAllowed → `StreamRejected`; anything else →
    `ConnectorError`. Callers log and carry on: a failed post never takes the process down.

    One client per service URL is shared by every reply. The factory makes a client with a new
    HTTP session (a new connection) and a token fetched on a worker thread, which per reply cost
    more than the posts themselves. A client carries its token in its headers and MSAL hands
    out tokens with at least five minutes to live, so a client is replaced after
    `client_max_age` seconds, or at once when the connector answers 401; a replaced client is
    closed when the last reply using it lets go.
    """

    request_timeout = 30.0
    max_throttle_retries = 5
    max_error_retries = 2
    backoff = 0.5
    max_wait = 30.0
    client_max_age = 240.0
    max_service_urls = 32  # Teams uses a handful of regional service URLs

    def __init__(
        self,
        factory: ChannelServiceClientFactoryBase,
        *,
        app_id: str | None,
        anonymous: bool,
        metrics: Metrics,
    ) -> None:
        self._factory = factory
        self._anonymous = anonymous
        # The bot's own identity, as the SDK builds it for proactive calls.
        claims = {"aud": app_id, "appid": app_id} if app_id else {}
        self._identity = ClaimsIdentity(claims, authentication_type=None if anonymous else "Bearer")
        self._metrics = metrics
        self._pool: dict[str, _Pooled] = {}  # service URL → its current client
        self._leased: dict[int, _Pooled] = {}  # id(client) → its entry, while anyone holds it
        self._creating = asyncio.Lock()
        self._closing: set[asyncio.Task] = set()  # closes in flight, referenced until done

    async def open(self, service_url: str) -> ConnectorClientBase:
        if not trust.service_url_allowed(service_url, anonymous=self._anonymous):
            # The last check before the bot's token leaves: replies, welcomes and streams all
            # get their client here, whatever let the URL this far.
            self._metrics.errors.labels("teams_connector").inc()
            log.warning(
                "not posting to %r: not %s",
                trust.host_of(service_url),
                "a loopback address" if self._anonymous else "a Bot Framework service host",
            )
            raise ServiceUrlRefused(None, "ServiceUrlNotAllowed")
        entry = self._current(service_url)
        if entry is None:
            async with self._creating:  # one creation at a time; the others then share it
                entry = self._current(service_url) or await self._create(service_url)
        entry.users += 1
        self._leased[id(entry.client)] = entry
        return entry.client

    def _current(self, service_url: str) -> _Pooled | None:
        entry = self._pool.get(service_url)
        if entry is None or entry.retired:
            return None
        if asyncio.get_running_loop().time() >= entry.expires:
            self._retire(entry)
            return None
        return entry

    async def _create(self, service_url: str) -> _Pooled:
        try:
            client = await self._factory.create_connector_client(
                None,
                self._identity,
                service_url,
                AuthenticationConstants.AGENTS_SDK_SCOPE,
                [AuthenticationConstants.AGENTS_SDK_SCOPE + "/.default"],
                use_anonymous=self._anonymous,
            )
        except Exception as exc:  # token acquisition (MSAL), bad URL, ...
            self._metrics.errors.labels("teams_connector").inc()
            log.error("could not create a connector client: %s", type(exc).__name__)
            raise ConnectorError(None, type(exc).__name__) from None
        entry = _Pooled(
            service_url, client, asyncio.get_running_loop().time() + self.client_max_age
        )
        self._pool[service_url] = entry
        while len(self._pool) > self.max_service_urls:
            self._retire(next(iter(self._pool.values())))  # the oldest
        return entry

    def _retire(self, entry: _Pooled) -> None:
        entry.retired = True
        if self._pool.get(entry.service_url) is entry:
            del self._pool[entry.service_url]
        if entry.users == 0:
            self._close_later(entry)

    def _close_later(self, entry: _Pooled) -> None:
        self._leased.pop(id(entry.client), None)
        task = asyncio.get_running_loop().create_task(_close_quietly(entry.client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def invalidate(self, client: ConnectorClientBase) -> None:
        """Stop handing out `client` (its token was refused); it closes once released."""
        entry = self._leased.get(id(client))
        if entry is not None and not entry.retired:
            self._retire(entry)

    async def release(self, client: ConnectorClientBase | None) -> None:
        if client is None:
            return
        entry = self._leased.get(id(client))
        if entry is None:
            return
        entry.users = max(0, entry.users - 1)
        if entry.retired and entry.users == 0:
            self._close_later(entry)

    @contextlib.asynccontextmanager
    async def client(self, service_url: str) -> AsyncIterator[ConnectorClientBase]:
        client = await self.open(service_url)
        try:
            yield client
        finally:
            await self.release(client)

    async def aclose(self) -> None:
        entries = {id(e): e for e in [*self._pool.values(), *self._leased.values()]}
        self._pool.clear()
        self._leased.clear()
        for entry in entries.values():
            entry.retired = True
            await _close_quietly(entry.client)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    async def post(
        self,
        client: ConnectorClientBase,
        activity: Activity,
        *,
        reply_to_id: str | None = None,
        retry: bool = True,
    ) -> str | None:
        """Post `activity` to its conversation; the id Teams gave it (None if it gave none)."""
        conversation_id = activity.conversation.id if activity.conversation else ""
        throttled = errors = 0
        while True:
            try:
                async with asyncio.timeout(self.request_timeout):
                    if reply_to_id:
                        res = await client.conversations.reply_to_activity(
                            conversation_id, reply_to_id, activity
                        )
                    else:
                        res = await client.conversations.send_to_conversation(
                            conversation_id, activity
                        )
                return (res.id or None) if res is not None else None
            except aiohttp.ClientResponseError as exc:
                status, code = exc.status, _error_code(exc.message)
                if status == 401:
                    self.invalidate(client)  # the next reply gets a client with a new token
                if status == 403 and code == "ContentStreamNotAllowed":
                    raise StreamRejected(status, code) from None
                if status == 429 and retry and throttled < self.max_throttle_retries:
                    throttled += 1
                    wait = _retry_after(exc.headers)
                    if wait is None:
                        wait = self.backoff * 2 ** (throttled - 1)
                    wait = min(wait, self.max_wait)
                    log.warning("Teams throttled a post (429); retrying in %.1f s", wait)
                    await asyncio.sleep(wait)
                    continue
                if status >= 500 and retry and errors < self.max_error_retries:
                    errors += 1
                    log.warning("Teams connector answered %s; retrying", status)
                    await asyncio.sleep(self.backoff * 2 ** (errors - 1))
                    continue
                raise ConnectorError(status, code) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                if retry and errors < self.max_error_retries:
                    errors += 1
                    log.warning("Teams connector unreachable (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(self.backoff * 2 ** (errors - 1))
                    continue
                raise ConnectorError(None, type(exc).__name__) from None


async def _close_quietly(client: ConnectorClientBase) -> None:
    with contextlib.suppress(Exception):
        await client.close()
