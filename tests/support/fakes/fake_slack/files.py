"""Slack's file hosting, for the fake Slack: `url_private_download` and `files.info`.

As Slack does it: a file's bytes are served only with `Authorization: Bearer <bot token>`;
without it (or with another token) the answer is Slack's HTML sign-in page with status 200, not
an error. Files can be hidden (`mode: hidden_by_limit`) or deleted (`tombstone`); a deleted
file's URL answers 404. `redirect_to(url)` makes a file's URL redirect elsewhere (a test of the
bot refusing to follow the token off Slack). Every download is recorded in `downloads`.

    f = slack.files.add("shot.png", png_bytes, "image/png")   # a file object for an event
    event = app_mention("<@UBOT> what is this?", files=[f], subtype="file_share")
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.support.fakes.fake_slack.state import SlackError

if TYPE_CHECKING:
    from tests.support.fakes.fake_slack.server import FakeSlack

SIGN_IN_PAGE = (
    b"<!DOCTYPE html><html lang='en'><head><title>Slack</title></head><body>"
    b"<h1>Sign in to Fake Team</h1><form action='/signin'></form></body></html>"
)


@dataclass
class Download:
    file_id: str
    token_sent: bool  # the request carried the bot token
    status: int


@dataclass
class _File:
    id: str
    name: str
    data: bytes
    mimetype: str
    mode: str = "hosted"
    redirect: str | None = None
    foreign: bool = False  # another workspace's file: the bot's token does not open it


@dataclass
class FakeSlackFiles:
    slack: FakeSlack
    files: dict[str, _File] = field(default_factory=dict)
    downloads: list[Download] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/files-pri/{team}-{file_id}/download/{name}", self._download)
        app.router.add_get("/files-pri/{team}-{file_id}/{name}", self._download)

    def reset(self) -> None:
        self.downloads.clear()

    def add(
        self,
        name: str,
        data: bytes,
        mimetype: str,
        *,
        mode: str = "hosted",
        size: int | None = None,
        file_access: str | None = None,
        foreign: bool = False,
    ) -> dict[str, Any]:
        """Host a file; returns the file object as events carry it."""
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = _File(file_id, name, data, mimetype, mode, foreign=foreign)
        obj = self.object(file_id, size=size)
        if file_access:
            # Slack Connect: the event carries only the id; files.info has the rest.
            return {"id": file_id, "file_access": file_access}
        return obj

    def object(self, file_id: str, *, size: int | None = None) -> dict[str, Any]:
        f = self.files[file_id]
        base = f"{self.slack.url}/files-pri/{self.slack.team_id}-{file_id}"
        obj: dict[str, Any] = {"id": file_id, "mode": f.mode}
        if f.mode == "tombstone":
            return obj
        obj |= {
            "name": f.name,
            "title": f.name,
            "mimetype": f.mimetype,
            "filetype": f.name.rsplit(".", 1)[-1],
            "size": len(f.data) if size is None else size,
        }
        if f.mode == "hidden_by_limit":
            return obj
        return obj | {
            "url_private": f"{base}/{f.name}",
            "url_private_download": f"{base}/download/{f.name}",
        }

    def delete(self, file_id: str) -> None:
        self.files[file_id].mode = "tombstone"

    def redirect_to(self, file_id: str, url: str) -> None:
        self.files[file_id].redirect = url

    def info(self, params: dict[str, Any]) -> dict[str, Any]:
        f = self.files.get(str(params.get("file") or ""))
        if f is None or f.mode == "tombstone":
            raise SlackError("file_not_found" if f is None else "file_deleted")
        return {"file": self.object(f.id)}

    async def _download(self, request: web.Request) -> web.StreamResponse:
        f = self.files.get(request.match_info["file_id"])
        token_sent = request.headers.get("Authorization") == f"Bearer {self.slack.token}"
        # Slack shows its sign-in page to a token of another workspace, and to no token at all.
        authorized = token_sent and not (f is not None and f.foreign)
        status = 200
        try:
            if not authorized:
                return web.Response(body=SIGN_IN_PAGE, content_type="text/html")
            if f is None or f.mode != "hosted":
                status = 404
                return web.Response(status=404, text="file_not_found")
            if f.redirect:
                status = 302
                raise web.HTTPFound(f.redirect)
            return web.Response(body=f.data, content_type=f.mimetype)
        finally:
            self.downloads.append(Download(request.match_info["file_id"], token_sent, status))
            if self.slack._changed is not None:
                self.slack._changed.set()
