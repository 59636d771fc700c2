"""Downloading a shared file from a platform's file host, for `bot.messages.Attachment.fetch`.

The rules both platforms share (docs/spec.md §7, README "Files and images"):

- every hop is checked before it is requested: the first URL and each redirect target must
  pass the platform's `allowed(url)` (its own file hosts), so a redirect to another host is
  refused, never followed; credentials go only where `credentials(url)` gives them;
- the download is streamed and stops at `limit` bytes (a `Content-Length` over it stops it
  before any byte is read);
- an answer that is not the file (401/403, 404/410, an error page) raises `AttachmentError`,
  never reaches the model.

URLs come from the signed event only; nothing here ever looks at message text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import aiohttp

from bot.messages import AttachmentError

log = logging.getLogger("threadwise.files")

MAX_REDIRECTS = 3
CHUNK = 64 * 1024
TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10, sock_read=30)


def host_of(url: str) -> str:
    """The URL's host, for logs (never the path or query: Slack and Teams put secrets there)."""
    try:
        return (urlsplit(url).hostname or "?")[:100]
    except ValueError:
        return "?"


async def download(
    session: aiohttp.ClientSession | None,
    url: str,
    *,
    limit: int,
    allowed: Callable[[str], bool],
    credentials: Callable[[str], dict[str, str]] | None = None,
) -> bytes:
    """The body at `url` (at most `limit` bytes), following only redirects `allowed` accepts."""
    own = session is None or session.closed
    http = aiohttp.ClientSession(timeout=TIMEOUT) if own else session
    assert http is not None
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            if not allowed(url):
                log.warning("file download refused: host %r is not allowed", host_of(url))
                raise AttachmentError("refused", f"host {host_of(url)} not allowed")
            headers = credentials(url) if credentials else {}
            try:
                async with http.get(
                    url, headers=headers, allow_redirects=False, timeout=TIMEOUT
                ) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        location = resp.headers.get("Location")
                        if not location:
                            raise AttachmentError("unavailable", "redirect without a location")
                        url = urljoin(url, location)
                        continue
                    return await _body(resp, limit)
            except aiohttp.ClientError as exc:
                raise AttachmentError("unavailable", type(exc).__name__) from None
            except TimeoutError:
                raise AttachmentError("unavailable", "timeout") from None
        raise AttachmentError("refused", "too many redirects")
    finally:
        if own:
            await http.close()


async def _body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    if resp.status in (401, 403):
        raise AttachmentError("refused", f"HTTP {resp.status}")
    if resp.status != 200:
        raise AttachmentError("unavailable", f"HTTP {resp.status}")
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise AttachmentError("too_large", "Content-Length", size=declared)
    out = bytearray()
    async for chunk in resp.content.iter_chunked(CHUNK):
        out += chunk
        if len(out) > limit:
            # Stop reading: the rest of the file never leaves the socket buffer.
            raise AttachmentError("too_large", "stream")
    return bytes(out)
