"""Images and files in Teams messages → `bot.messages.Attachment`s the core can fetch.

Two kinds are read (PLATFORM_NOTES "Images and files"); everything else a message carries (its
own `text/html` rendering, cards, channel file references that need Microsoft Graph) is not an
attachment for the model:

- a pasted image: `contentType: image/*` with a `contentUrl` on the conversation's service host.
  It is fetched with the bot's Bot Framework token, and only when the URL's host is the
  activity's `serviceUrl` host *and* that service URL passes the outbound host check
  (`trust.service_url_allowed`: Bot Framework hosts over https; in anonymous mode loopback
  only, and then without a token, since there is none);
- a file sent in personal chat (manifest `supportsFiles: true`):
  `application/vnd.microsoft.teams.file.download.info` whose `content.downloadUrl` is
  pre-signed. It is fetched *without* the token, from Microsoft's file hosts only
  (SharePoint/OneDrive, the Teams attachment CDN, Azure Blob storage) over https.

Redirects are checked hop by hop with the same rule, and the token never follows one to
another host (adapters/downloads.py). URLs in message text are never looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from microsoft_agents.activity import Activity
from microsoft_agents.hosting.core import OutboundHostValidator

from adapters.downloads import download
from adapters.teams import trust
from bot.messages import Attachment, AttachmentError

log = logging.getLogger("threadwise.teams")

FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
# Where Teams' pre-signed download URLs point: the attachment hosts of the Agents SDK's own
# default list (the ones trust.py keeps away from the bot's token).
FILE_HOSTS = ("sharepoint.com", "svc.ms", "blob.core.windows.net")
_FILE_HOSTS = OutboundHostValidator(
    list(FILE_HOSTS), enabled=True, include_default_microsoft_hosts=False
)
MAX_ATTACHMENTS = 20

TokenSource = Callable[[], Awaitable[str | None]]


def _host(url: str | None) -> str:
    try:
        return (urlsplit(url or "").hostname or "").lower()
    except ValueError:
        return ""


class TeamsFiles:
    """Builds the attachments of a message activity; `token()` gives the bot's token."""

    def __init__(self, token: TokenSource, *, anonymous: bool) -> None:
        self._token = token
        self._anonymous = anonymous

    def attachments(self, activity: Activity) -> tuple[Attachment, ...]:
        out: list[Attachment] = []
        for a in (activity.attachments or [])[:MAX_ATTACHMENTS]:
            kind = (a.content_type or "").lower()
            if kind == FILE_DOWNLOAD_INFO:
                att = self._file(a)
            elif kind.startswith("image/") and a.content_url:
                att = self._image(a, activity.service_url)
            else:
                continue
            if att is not None:
                out.append(att)
        return tuple(out)

    def _image(self, a: Any, service_url: str | None) -> Attachment:
        url = str(a.content_url)
        service_host = _host(service_url)
        # The token goes only to the service host, and only once the service URL passes the
        # outbound check; a contentUrl anywhere else is refused when fetched.
        trusted = bool(service_host) and trust.service_url_allowed(
            service_url, anonymous=self._anonymous
        )

        def allowed(u: str) -> bool:
            if not trusted or _host(u) != service_host:
                return False
            scheme = urlsplit(u).scheme
            return scheme == "https" or (scheme == "http" and trust.is_loopback_url(u))

        async def fetch(limit: int) -> bytes:
            if not allowed(url):  # before a token is even asked for
                log.warning("image not fetched: %r is not the service host", _host(url)[:100])
                raise AttachmentError("refused", "contentUrl is not on the service host")
            headers: dict[str, str] = {}
            if not self._anonymous:
                token = await self._token()
                if not token:
                    raise AttachmentError("refused", "no bot token")
                headers = {"Authorization": f"Bearer {token}"}
            return await download(
                None, url, limit=limit, allowed=allowed, credentials=lambda _u: headers
            )

        name = a.name or "image." + (a.content_type or "image/png").split("/", 1)[-1].strip("*")
        return Attachment(name=name, mimetype=a.content_type or "", size=None, fetch=fetch)

    def _file(self, a: Any) -> Attachment | None:
        content = a.content if isinstance(a.content, dict) else {}
        url = content.get("downloadUrl")
        name = a.name or "file"
        file_type = str(content.get("fileType") or "")

        async def fetch(limit: int) -> bytes:
            if not isinstance(url, str) or not url:
                raise AttachmentError("unavailable", "no downloadUrl")
            return await download(None, url, limit=limit, allowed=file_host_allowed)

        # Teams gives a file type ("pdf", "png"), not a MIME type; the name's extension and
        # the bytes decide (bot/attachments.py).
        return Attachment(name=name, mimetype=_mime_of(file_type), size=None, fetch=fetch)


def file_host_allowed(url: str) -> bool:
    """A pre-signed Teams download URL: https, no user info, one of Microsoft's file hosts."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.username or parts.password:
        return False
    return _FILE_HOSTS.is_allowed(url)


_TYPES = {
    "pdf": "application/pdf",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "txt": "text/plain",
    "md": "text/markdown",
    "csv": "text/csv",
    "json": "application/json",
}


def _mime_of(file_type: str) -> str:
    return _TYPES.get(file_type.lower().lstrip("."), "application/octet-stream")
