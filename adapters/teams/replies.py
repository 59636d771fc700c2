"""Posting replies into Teams: plain messages, typing, and Teams' streaming protocol.

Replies are produced after the HTTP request that brought the message has been acknowledged (a
model can take a minute; Bot Framework wants an answer in seconds), so every post is
proactive-style: a connector client for the activity's `serviceUrl` from the SDK's
`RestChannelServiceClientFactory` (token from the SDK's MSAL connection, or none in anonymous
mode), then `reply_to_activity` into the conversation id (for channels it carries `;messageid=`,
so the reply lands in the same reply chain).

Streaming (1:1 chats only; Teams rejects it elsewhere) follows Microsoft's protocol: a first
`typing` activity with `streaminfo` (`streamSequence: 1`; `streamType: streaming` carrying the
model's first words, or `informative` while the model is slow to start) whose response id becomes
the `streamId`; then `typing` chunks each holding the full text so far, `streamSequence`
increasing, at most one a second; then a `message` with `streamType: final`.
The SDK's `StreamingResponse` speaks the same protocol but is tied to a live TurnContext and
does not retry 429s, loses the remainder after a 403, cannot replace the text at the end, and has
no Teams 2-minute or size cut-over; this module adds those and otherwise mirrors it.
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
from microsoft_agents.activity import Activity, ConversationReference, StreamInfo
from microsoft_agents.hosting.core import (
    AuthenticationConstants,
    ChannelServiceClientFactoryBase,
    ClaimsIdentity,
)
from microsoft_agents.hosting.core.connector import ConnectorClientBase

from adapters.teams import trust
from adapters.text import markdown_blocks, split_markdown
from bot.metrics import Metrics

log = logging.getLogger("threadwise.teams")

# Teams refuses messages above about 100 KB (413 MessageSizeTooBig) and Microsoft recommends
# staying under 80 KB; the size is the text's UTF-16 encoding (what Teams stores).
MAX_MESSAGE_BYTES = 80_000

INFORMATIVE_TEXT = "Working on it…"
STILL_WORKING_TEXT = "_Still working on it — the rest follows in a new message._"
FENCE_RESERVE = 64  # room to close an open code block at a cut


def utf16_bytes(text: str) -> int:
    """Size of `text` in UTF-16, in bytes (2 per code unit)."""
    return len(text.encode("utf-16-le"))


def split_message(text: str, limit: int | None = None) -> list[str]:
    """Markdown split on paragraph/code-block boundaries, each part under Teams' size limit."""
    return split_markdown(text, limit or MAX_MESSAGE_BYTES, length=utf16_bytes)


def fitting_prefix(text: str, limit: int) -> str:
    """The longest start of `text` within `limit` UTF-16 bytes, cut where a reader would cut."""
    if utf16_bytes(text) <= limit:
        return text
    lo, hi = 0, len(text)  # largest k with text[:k] fitting, by binary search
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if utf16_bytes(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    for boundary in ("\n\n", "\n", " "):
        cut = text.rfind(boundary, 0, lo)
        if cut > lo // 2:
            return text[:cut]
    return text[:lo]


def open_fence(text: str) -> tuple[str, str] | None:
    """If `text` ends inside a fenced code block: (its opening line, the line that closes it)."""
    blocks = markdown_blocks(text)
    if not blocks or blocks[-1].kind != "code" or blocks[-1].close_fence is not None:
        return None
    opening = blocks[-1].open_fence
    stripped = opening.lstrip()
    indent = opening[: len(opening) - len(stripped)]
    fence = stripped[: len(stripped) - len(stripped.lstrip(stripped[0]))]
    return opening, indent + fence


# ------------------------------------------------------------------------------ connector


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


# ------------------------------------------------------------------------------ reply target


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a reply goes: the incoming activity's conversation reference."""

    reference: ConversationReference
    reply_to_id: str | None

    @property
    def service_url(self) -> str:
        return self.reference.service_url or ""

    def activity(self, type_: str, **fields) -> Activity:
        # Everything the bot posts passes here: its text can mention no one (`trust.py`).
        if isinstance(fields.get("text"), str):
            fields["text"] = trust.neutral_text(fields["text"])
        if "entities" in fields:
            fields["entities"] = trust.without_mentions(fields["entities"])
        activity = Activity(type=type_, **fields)
        activity.apply_conversation_reference(self.reference)
        if not self.reply_to_id:
            activity.reply_to_id = None
        return activity

    def message(self, text: str, entities: list | None = None) -> Activity:
        fields: dict = {"text": text, "text_format": "markdown"}
        if entities:
            fields["entities"] = entities
        return self.activity("message", **fields)


class TeamsReplyTarget:
    """`ReplyTarget` for one Teams message: typing, Markdown messages, streamed replies."""

    def __init__(
        self, outbound: Outbound, destination: Destination, *, streaming: bool, metrics: Metrics
    ) -> None:
        self.outbound = outbound
        self.destination = destination
        self.streaming = streaming
        self.metrics = metrics
        self._stream: TeamsStream | BufferedStream | None = None

    async def typing(self) -> None:
        if isinstance(self._stream, TeamsStream) and not self._stream.finished:
            return  # the stream (or its pending first update) already shows progress
        try:
            async with self.outbound.client(self.destination.service_url) as client:
                await self.outbound.post(
                    client,
                    self.destination.activity("typing"),
                    reply_to_id=self.destination.reply_to_id,
                    retry=False,
                )
        except ConnectorError as exc:
            log.info("typing indicator not shown: %s", exc)

    async def send(self, text: str) -> None:
        stream = self._stream
        if isinstance(stream, TeamsStream) and not stream.finished:
            # An apology after a failed model call: a stream already open (showing only its
            # informative update) ends with this text rather than being left hanging.
            if await stream.finish_with(text):
                return
        await self.post_text(text)

    def stream(self) -> TeamsStream | BufferedStream:
        self._stream = TeamsStream(self) if self.streaming else BufferedStream(self)
        return self._stream

    async def post_text(self, text: str, client: ConnectorClientBase | None = None) -> None:
        """Post `text` as one or more messages (split under the size limit)."""
        await self.post_parts(split_message(text), client)

    async def post_parts(self, parts: list[str], client: ConnectorClientBase | None = None) -> None:
        """Post each part as a message, in order; a failure is logged and ends the reply."""
        if not parts:
            return
        try:
            if client is not None:
                await self._post_parts(client, parts)
            else:
                async with self.outbound.client(self.destination.service_url) as own:
                    await self._post_parts(own, parts)
        except ConnectorError as exc:
            self.metrics.errors.labels("teams_connector").inc()
            log.error("reply not delivered to Teams: %s", exc)

    async def _post_parts(self, client: ConnectorClientBase, parts: list[str]) -> None:
        for part in parts:
            await self.outbound.post(
                client, self.destination.message(part), reply_to_id=self.destination.reply_to_id
            )


class BufferedStream:
    """Group chats and channels cannot stream: collect the reply, post it once at the end."""

    def __init__(self, target: TeamsReplyTarget) -> None:
        self._target = target
        self._parts: list[str] = []
        self.finished = False

    async def append(self, text: str) -> None:
        self._parts.append(text)

    async def finish(self, text: str) -> None:
        if self.finished:
            return
        self.finished = True
        await self._target.post_text(text or "".join(self._parts))


class TeamsStream:
    """Teams' streaming protocol for one reply in a 1:1 chat (see the module docstring).

    A background task opens the stream with the model's first words (or, if the model is still
    silent after `open_wait` seconds, with an informative update), then sends the full text so
    far at most every `interval` seconds. After `max_seconds` (Teams stops a stream at 2
    minutes) or when the text outgrows one message, the stream is finalized with what it shows
    and the rest follows as ordinary messages. A 403 ContentStreamNotAllowed (user pressed
    Stop, stream expired) ends it gracefully: what was not shown yet is posted as an ordinary
    message.
    """

    interval = 1.0
    open_wait = 2.0
    max_seconds = 110.0
    max_chunk_failures = 3

    def __init__(self, target: TeamsReplyTarget) -> None:
        self._target = target
        self._out = target.outbound
        self._dest = target.destination
        self._text = ""  # everything appended so far
        self._shown = ""  # the text of the last chunk Teams accepted
        self._cut_text: str | None = None  # what the stream was finalized with, after a cut
        self.state = "starting"  # → streaming → cut | dead | fallback; finished at the end
        self.stream_id: str | None = None
        self._seq = 0
        self._last_post = 0.0
        self._client: ConnectorClientBase | None = None
        self._wake = asyncio.Event()
        self._finishing = asyncio.Event()
        self.finished = False
        self._pump = asyncio.get_running_loop().create_task(self._run())

    # -- the ReplyStream protocol

    async def append(self, text: str) -> None:
        if not self.finished and text:
            self._text += text
            self._wake.set()

    async def finish(self, text: str) -> None:
        if self.finished:
            return
        self.finished = True
        self._finishing.set()
        self._wake.set()
        try:
            await self._pump
            await self._complete(text or self._text)
        except Exception as exc:  # never let a reply crash the responder
            self._target.metrics.errors.labels("teams_connector").inc()
            log.error("streamed reply failed: %s", type(exc).__name__)
        finally:
            await self._out.release(self._client)
            self._client = None

    async def finish_with(self, text: str) -> bool:
        """End the stream because a plain message is being sent; True if `text` was used."""
        if self._text:
            await self.finish(self._text)
            return False
        await self.finish(text)
        return True

    # -- the background task

    async def _run(self) -> None:
        try:
            await self._stream()
        except Exception as exc:
            log.error("streaming stopped: %s", type(exc).__name__)
            if self.state in ("starting", "streaming"):
                self.state = "dead" if self.stream_id else "fallback"

    async def _stream(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._client = await self._out.open(self._dest.service_url)
        except ConnectorError:
            self.state = "fallback"
            return
        # Teams accepts one stream update a second, so an informative update sent at once would
        # hold the model's first words back a whole second. Wait for them instead (the typing
        # indicator sent just before shows meanwhile): the first words open the stream
        # themselves; a reply finished by then goes out as one plain message; a model still
        # silent after `open_wait` gets the informative update, as Teams recommends.
        if not self._text:
            await _wait(self._wake, self.open_wait)
        if self._finishing.is_set():
            self.state = "fallback"
            return
        first = self._text
        if utf16_bytes(first) > MAX_MESSAGE_BYTES - FENCE_RESERVE:
            self.state = "fallback"
            return
        try:
            if first:
                stream_id = await self._post("typing", first, StreamInfo(stream_type="streaming"))
            else:
                stream_id = await self._post(
                    "typing", INFORMATIVE_TEXT, StreamInfo(stream_type="informative")
                )
        except StreamRejected:
            self.state = "dead"
            return
        except ConnectorError as exc:
            log.info("Teams did not accept a stream here (%s); replying in one message", exc)
            self.state = "fallback"
            return
        if not stream_id:
            self.state = "fallback"
            return
        self._shown = first
        self.stream_id = stream_id
        self.state = "streaming"
        started = loop.time()
        failures = 0
        while not self._finishing.is_set():
            now = loop.time()
            cap = started + self.max_seconds
            if now >= cap:
                await self._cut("time")
                return
            if self._text == self._shown:
                self._wake.clear()
                await _wait(self._wake, cap - now)
                continue
            due = self._last_post + self.interval
            if now < due:
                await _wait(self._finishing, min(due, cap) - now)
                continue
            snapshot = self._text
            if utf16_bytes(snapshot) > MAX_MESSAGE_BYTES - FENCE_RESERVE:
                await self._cut("size")
                return
            try:
                await self._post("typing", snapshot, StreamInfo(stream_type="streaming"))
            except StreamRejected:
                log.info("Teams stopped the stream (ContentStreamNotAllowed)")
                self.state = "dead"
                return
            except ConnectorError as exc:
                failures += 1
                if (exc.status and 400 <= exc.status < 500) or failures >= self.max_chunk_failures:
                    log.warning("stream update refused (%s); ending the stream", exc)
                    self.state = "dead"
                    return
                log.warning("stream update lost (%s); the next one carries the text", exc)
                continue
            failures = 0
            self._shown = snapshot

    async def _post(self, type_: str, text: str, info: StreamInfo) -> str | None:
        """One stream activity; informative and streaming updates carry the next sequence."""
        if info.stream_type != "final":
            self._seq += 1
            info.stream_sequence = self._seq
        if self.stream_id:
            info.stream_id = self.stream_id
        if type_ == "message":
            activity = self._dest.message(text, [info])
        else:
            activity = self._dest.activity(type_, text=text, entities=[info])
        assert self._client is not None
        try:
            return await self._out.post(self._client, activity, reply_to_id=self._dest.reply_to_id)
        finally:
            self._last_post = asyncio.get_running_loop().time()

    async def _pace(self) -> None:
        wait = self._last_post + self.interval - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _cut(self, reason: str) -> None:
        """Finalize the stream early with what fits; the rest goes out at `finish`."""
        snapshot, body = self._final_body(self._text, partial=True)
        if not body.strip():
            body = STILL_WORKING_TEXT
        log.info("finalizing the stream early (%s); the rest follows as a message", reason)
        await self._pace()
        try:
            await self._post("message", body, StreamInfo(stream_type="final"))
        except ConnectorError as exc:
            log.warning("could not finalize the stream (%s)", exc)
            self.state = "dead"
            return
        self._cut_text = snapshot
        self.state = "cut"
        with contextlib.suppress(ConnectorError):
            await self._out.post(
                self._client,
                self._dest.activity("typing"),
                reply_to_id=self._dest.reply_to_id,
                retry=False,
            )

    # -- the end

    async def _complete(self, text: str) -> None:
        if self.state == "streaming":
            head, body = self._final_body(text or "…")
            await self._pace()
            try:
                await self._post("message", body, StreamInfo(stream_type="final"))
            except ConnectorError as exc:
                log.warning("final stream message refused (%s); posting the rest instead", exc)
                self.state = "dead"
            else:
                self.state = "done"
                await self._target.post_text(_remainder(text, head), self._client)
                return
        if self.state == "cut":
            await self._target.post_text(_remainder(text, self._cut_text or ""), self._client)
        elif self.state == "dead":
            await self._target.post_text(_remainder(text, self._shown), self._client)
        else:  # fallback, or never started
            await self._target.post_text(text, self._client)
        self.state = "done"

    def _final_body(self, text: str, *, partial: bool = False) -> tuple[str, str]:
        """What the stream's final message holds: (the start of `text` it covers, its body).

        All of `text` when it fits one message; else the longest start that fits, cut between
        paragraphs (never shorter than what the stream already shows), with an open code block
        closed. The rest follows as ordinary messages. A `partial` text (the model is still
        writing) always gets an open code block closed.
        """
        if not partial and utf16_bytes(text) <= MAX_MESSAGE_BYTES:
            return text, text
        head = fitting_prefix(text, MAX_MESSAGE_BYTES - FENCE_RESERVE)
        if len(head) < len(self._shown) and text.startswith(self._shown):
            head = self._shown
        fence = open_fence(head)
        return head, head + "\n" + fence[1] if fence else head


def _remainder(text: str, shown: str) -> str:
    """What of `text` the user has not seen, given the stream showed `shown`."""
    if not shown or not text.startswith(shown):
        return text
    rest = text[len(shown) :]
    fence = open_fence(shown)
    if fence and rest.strip():
        return fence[0] + "\n" + rest.lstrip("\n")
    return rest.lstrip()


async def _close_quietly(client: ConnectorClientBase) -> None:
    with contextlib.suppress(Exception):
        await client.close()


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), max(timeout, 0))
