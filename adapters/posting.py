"""A reply as messages: where to cut a text, and making a thread's messages read a text.

Shared by the streaming core (`adapters.streaming`) and by plain sends: `reconcile` is the
post-and-edit fallback for any sink that can edit (the core's, not each platform's), and
`fitting_prefix` / `remainder` / `open_fence` are how a live message is cut and continued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adapters.text import markdown_blocks, split_markdown

if TYPE_CHECKING:
    from adapters.streaming import Sink


class TooLong(Exception):
    """The platform refused a message as too long; the sink has lowered its `limit`."""


@dataclass(slots=True)
class Posted:
    """One message of a reply: the sink's handle for it and the text it shows now."""

    ref: Any
    shown: str = ""


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


def fitting_prefix(text: str, limit: int, length: Callable[[str], int] = len) -> str:
    """The longest start of `text` within `limit`, cut where a reader would cut."""
    if length(text) <= limit:
        return text
    lo, hi = 0, len(text)  # largest k with text[:k] fitting, by binary search
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if length(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    for boundary in ("\n\n", "\n", " "):
        cut = text.rfind(boundary, 0, lo)
        if cut > lo // 2:
            return text[:cut]
    return text[:lo]


def remainder(text: str, shown: str) -> str:
    """What of `text` the reader has not seen, given they were shown `shown` (all if it differs).

    A cut inside a code block reopens it, so the rest still renders as code.
    """
    if not shown or not text.startswith(shown):
        return text
    rest = text[len(shown) :]
    fence = open_fence(shown)
    if fence and rest.strip():
        return fence[0] + "\n" + rest.lstrip("\n")
    return rest.lstrip()


async def reconcile(sink: Sink, msgs: list[Posted], text: str, limit: int) -> None:
    """Make `msgs` read `text` split at `limit`: edit what differs, post what is missing.

    `msgs` changes in place, so whatever was posted stays known if a later call fails (the
    exception then propagates). A message that cannot be edited is posted anew with everything
    after it, so the thread keeps its order.
    """
    pieces = split_markdown(text, limit, length=sink.length)
    if not pieces:
        return
    for i, piece in enumerate(pieces):
        if i < len(msgs):
            if msgs[i].shown == piece:
                continue
            try:
                await sink.edit(msgs[i].ref, piece)
                msgs[i].shown = piece
                continue
            except TooLong:
                raise
            except Exception:
                for stale in msgs[i:]:
                    await sink.delete(stale.ref)
                del msgs[i:]
        msgs.append(Posted(await sink.post(piece), piece))
    for extra in msgs[len(pieces) :]:
        await sink.delete(extra.ref)
    del msgs[len(pieces) :]


async def deliver(sink: Sink, msgs: list[Posted], text: str) -> None:
    """`reconcile` at the sink's limit, and again at its lowered limit if it said too long."""
    limit = sink.limit
    try:
        await reconcile(sink, msgs, text, limit)
    except TooLong:
        if sink.limit >= limit:
            raise
        await reconcile(sink, msgs, text, sink.limit)
