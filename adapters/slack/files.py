"""Files attached to Slack messages → `bot.messages.Attachment`s the core can fetch.

A message with files is `subtype: file_share` (app_mention events carry `files` too); each file
object names `url_private_download` (or `url_private`), downloadable with the bot token (scope
`files:read`). Without the token Slack answers 200 with its HTML sign-in page: the core refuses
that as "not the file". Hidden files (`mode: hidden_by_limit`, over the free plan's limit) and
deleted ones (`tombstone`) are unavailable; a Slack Connect file marked `file_access:
check_file_info` is looked up with `files.info` first.

The bot token is sent only to Slack's file host (`files.slack.com`) or the host of SLACK_API_URL
(a local test Slack serves both), over https unless SLACK_API_URL itself is plain http, and
redirects are checked hop by hop the same way (adapters/downloads.py). URLs in message text are
never looked at.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from slack_sdk.web.async_client import AsyncWebClient

from adapters.downloads import download
from adapters.slack.api import log_failure
from bot.messages import Attachment, AttachmentError

log = logging.getLogger("threadwise.slack")

SLACK_FILE_HOST = "files.slack.com"
UNAVAILABLE_MODES = frozenset({"hidden_by_limit", "tombstone"})
MAX_FILES = 20  # what one event may carry into the core (the core reads fewer)


class SlackFiles:
    def __init__(self, client: AsyncWebClient, *, bot_token: str, api_url: str) -> None:
        self.client = client
        self._token = bot_token
        api = urlsplit(api_url)
        self._api_host = (api.hostname or "").lower()
        self._api_scheme = api.scheme

    def allowed(self, url: str) -> bool:
        """Slack's file host over https, or SLACK_API_URL's host with its own scheme."""
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            return False
        if parts.username or parts.password or not host:
            return False
        if host == SLACK_FILE_HOST and parts.scheme == "https":
            return True
        return host == self._api_host and parts.scheme in ("https", self._api_scheme)

    def _credentials(self, url: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}  # `allowed` has passed for `url`

    async def attachments(self, event: Mapping[str, Any]) -> tuple[Attachment, ...]:
        """The event's files; a Slack Connect file that names only its id is looked up first
        (`files.info`), so its name and type are known before the core decides about it."""
        files = event.get("files")
        if not isinstance(files, list):
            return ()
        out = []
        for f in files[:MAX_FILES]:
            if not isinstance(f, dict):
                continue
            if f.get("file_access") == "check_file_info":
                try:
                    f = await self._info(f)
                except AttachmentError as exc:
                    out.append(_unavailable(f, exc))
                    continue
            out.append(self._attachment(f))
        return tuple(out)

    def _attachment(self, file: dict[str, Any]) -> Attachment:
        name = str(file.get("name") or file.get("title") or "file")
        size = file.get("size")

        async def fetch(limit: int) -> bytes:
            return await self._fetch(file, limit)

        return Attachment(
            name=name,
            mimetype=str(file.get("mimetype") or ""),
            size=size if isinstance(size, int) and size >= 0 else None,
            fetch=fetch,
        )

    async def _fetch(self, file: dict[str, Any], limit: int) -> bytes:
        if not _url(file) and file.get("mode") not in UNAVAILABLE_MODES:
            file = await self._info(file)
        if file.get("mode") in UNAVAILABLE_MODES:
            raise AttachmentError("unavailable", str(file.get("mode")))
        url = _url(file)
        if not url:
            raise AttachmentError("unavailable", "no download URL")
        size = file.get("size")
        if isinstance(size, int) and size > limit:
            raise AttachmentError("too_large", "declared", size=size)
        session = self.client.session
        return await download(
            session, url, limit=limit, allowed=self.allowed, credentials=self._credentials
        )

    async def _info(self, file: dict[str, Any]) -> dict[str, Any]:
        file_id = file.get("id")
        if not isinstance(file_id, str) or not file_id:
            raise AttachmentError("unavailable", "no file id")
        try:
            resp = await self.client.files_info(file=file_id)
        except Exception as e:
            code = log_failure("files.info", e)
            kind = "refused" if code in ("missing_scope", "not_authed", "no_permission") else None
            raise AttachmentError(kind or "unavailable", code) from None
        info = resp.get("file")
        if not isinstance(info, dict):
            raise AttachmentError("unavailable", "files.info gave no file")
        return info


def _unavailable(file: Mapping[str, Any], exc: AttachmentError) -> Attachment:
    async def fetch(limit: int) -> bytes:
        raise exc

    return Attachment(str(file.get("name") or file.get("id") or "file"), "", None, fetch)


def _url(file: Mapping[str, Any]) -> str | None:
    for key in ("url_private_download", "url_private"):
        value = file.get(key)
        if isinstance(value, str) and value:
            return value
    return None
