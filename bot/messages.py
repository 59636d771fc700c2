"""The common message format: one incoming type and one reply interface for every platform.

Adapters translate platform events into `IncomingMessage` and implement `ReplyTarget` to post
back into the thread; the core never sees a platform SDK object (Vercel Chat SDK's design).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from aiohttp import web

Platform = Literal["slack", "teams", "console"]


def conversation_key(platform: str, workspace: str, channel: str, thread: str | None) -> str:
    """One thread of memory, per docs/spec.md §2: platform + workspace + channel (+ thread)."""
    parts = [platform, workspace, channel]
    if thread:
        parts.append(thread)
    return ":".join(parts)


class AttachmentError(Exception):
    """A file the adapter could not hand over; `kind` says why, for the message users see.

    `too_large`: over the limit (`size` bytes when known); `refused`: the platform or a check
    said no (no token, a foreign host, a redirect elsewhere, a web page instead of the file);
    `unavailable`: the file is gone, hidden or could not be reached.
    """

    def __init__(
        self,
        kind: Literal["too_large", "refused", "unavailable"],
        detail: str = "",
        size: int | None = None,
    ) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.size = size


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file or image shared with the message, as the platform declared it.

    Nothing is downloaded until the core calls `fetch(limit)`, which the adapter supplies: it
    returns the file's bytes (at most `limit` of them) from the platform's own file host, or
    raises `AttachmentError`. `mimetype` and `size` are what the platform *says*; the core
    checks the bytes against them.
    """

    name: str
    mimetype: str
    size: int | None
    fetch: Callable[[int], Awaitable[bytes]] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A human message addressed to the bot, already stripped of the bot's mention.

    `user_id` is the platform's verified id of the sender (Slack `U…`, Teams AAD object id,
    console OS user); it is the only identity the access check trusts. `message_id` names the
    post, not its delivery: every delivery of one post carries the same, and the store claims a
    (conversation, message_id) once, so the post is answered once.
    """

    platform: Platform
    workspace: str
    channel: str
    thread: str | None
    user_id: str
    user_name: str
    text: str
    message_id: str
    is_dm: bool = False
    mentions_bot: bool = True
    event_id: str | None = None
    # A short note for the model about where the person is, filled by the adapter from what
    # the platform proved (the Slack assistant pane: the name of the channel they are looking
    # at). Names only, never other people's messages.
    context: str | None = None
    # Files and images shared with the message (bot/attachments.py reads them).
    attachments: tuple[Attachment, ...] = ()

    @property
    def conversation_key(self) -> str:
        return conversation_key(self.platform, self.workspace, self.channel, self.thread)

    @property
    def principal(self) -> str:
        """`slack:U123`, `teams:<aad id>`, `console:<user>` — the form BOT_ADMINS uses."""
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class AnswerInfo:
    """Said of a reply that is a final model answer: sinks mark it as AI-generated and ask for
    feedback on it (commands, apologies and notices carry none). A vote names these."""

    deployment: str
    prompt_scope: str


class ReplyStream(Protocol):
    """A reply being written into the thread, piece by piece.

    Adapters that cannot stream (Teams group chats) buffer `append` and post on `finish`.
    """

    async def append(self, text: str) -> None:
        """Add `text` (a delta, not the whole text so far) to the visible reply."""

    async def finish(self, text: str, *, answer: AnswerInfo | None = None) -> None:
        """Finalise the reply; `text` is the complete reply as it should finally read.

        `answer` says the reply is a final model answer (feedback buttons, the AI label).
        """


class ReplyTarget(Protocol):
    """Where the answer to one incoming message goes (the thread, DM or terminal)."""

    async def typing(self) -> None:
        """Show that the bot is working (Slack status, Teams typing, console spinner)."""

    async def send(self, text: str) -> None:
        """Post one complete Markdown message (command answers, notices, apologies)."""

    def stream(self) -> ReplyStream:
        """Open a streamed reply; nothing need be visible until the first `append`."""
        ...


class MessageHandler(Protocol):
    """What adapters hand messages to: the core's responder."""

    def submit(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        """Answer in the background (tracked, so shutdown can finish it); returns at once."""

    async def handle(self, message: IncomingMessage, reply: ReplyTarget) -> None:
        """Answer now: dedupe, lock, commands or model, store; never raises."""


class Cache(Protocol):
    """A small shared cache (Redis or in-process) adapters may use, e.g. for user names."""

    async def cache_get(self, key: str) -> str | None: ...

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Set only if absent (across replicas); True when this call set it."""
        ...


class Adapter(Protocol):
    """A platform edge: mounts its routes on the shared aiohttp app, or runs its own transport."""

    name: str

    def routes(self) -> list[str]:
        """Human-readable list of what it serves, e.g. `POST /slack/events` (start-up banner)."""
        ...

    def mount(self, app: web.Application) -> None:
        """Add HTTP routes to the shared server (before it starts)."""

    async def start(self) -> None:
        """Open long-lived connections (Socket Mode); called after the server is listening."""

    async def stop(self) -> None:
        """Stop taking new events (shutdown begins); clients stay open for replies in flight."""

    async def close(self) -> None:
        """Release clients; called after the replies in flight have been posted."""
