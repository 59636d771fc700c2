"""Teams attachments, for the fake connector: pasted images and personal-chat file downloads.

- `image(data, content_type)` hosts a pasted image at
  `<connector>/v3/attachments/<id>/views/original` — served only with the bot's Bot Framework
  token (an RS256 token of the connector's key set, audience `https://api.botframework.com`),
  401 otherwise — and returns the activity attachment (`contentType`, `contentUrl`).
- `file(name, data, file_type)` hosts a file at a pre-signed URL (`/_presigned/<id>?tempauth=…`,
  served to anyone holding the URL, as SharePoint does) and returns the
  `application/vnd.microsoft.teams.file.download.info` attachment. A request carrying an
  `Authorization` header is recorded (`leaked`): the bot must never send its token there.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web

if TYPE_CHECKING:
    from tests.support.fakes.fake_connector import FakeConnector


@dataclass
class FakeTeamsFiles:
    connector: FakeConnector
    blobs: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    downloads: list[tuple[str, bool]] = field(default_factory=list)  # (id, had a valid token)
    leaked: list[str] = field(default_factory=list)  # pre-signed downloads sent a token
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def mount(self, app: web.Application) -> None:
        app.router.add_get("/v3/attachments/{id}/views/original", self._image)
        app.router.add_get("/_presigned/{id}", self._presigned)

    def reset(self) -> None:
        self.downloads.clear()
        self.leaked.clear()

    def _add(self, data: bytes, content_type: str) -> str:
        blob_id = f"0-{next(self._ids)}-{uuid.uuid4().hex[:8]}"
        self.blobs[blob_id] = (data, content_type)
        return blob_id

    def image(self, data: bytes, content_type: str = "image/png") -> dict[str, Any]:
        blob_id = self._add(data, content_type)
        url = f"{self.connector.url.rstrip('/')}/v3/attachments/{blob_id}/views/original"
        return {"contentType": content_type, "contentUrl": url, "name": None}

    def file(
        self, name: str, data: bytes, file_type: str, *, url: str | None = None
    ) -> dict[str, Any]:
        blob_id = self._add(data, "application/octet-stream")
        base = self.connector.url.rstrip("/")
        return {
            "contentType": "application/vnd.microsoft.teams.file.download.info",
            "name": name,
            "contentUrl": f"https://contoso.sharepoint.com/personal/x/{name}",
            "content": {
                "downloadUrl": url or f"{base}/_presigned/{blob_id}?tempauth={uuid.uuid4().hex}",
                "uniqueId": blob_id,
                "fileType": file_type,
            },
        }

    def _valid(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        issuer = self.connector.issuer
        try:
            jwt.decode(
                header[7:],
                issuer.key.public_key(),
                algorithms=["RS256"],
                audience="https://api.botframework.com",
            )
        except jwt.PyJWTError:
            return False
        return True

    async def _image(self, request: web.Request) -> web.Response:
        blob = self.blobs.get(request.match_info["id"])
        ok = self._valid(request.headers.get("Authorization"))
        self.downloads.append((request.match_info["id"], ok))
        if not ok:
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        if blob is None:
            return web.json_response({"error": {"code": "NotFound"}}, status=404)
        return web.Response(body=blob[0], content_type=blob[1])

    async def _presigned(self, request: web.Request) -> web.Response:
        blob_id = request.match_info["id"]
        if "Authorization" in request.headers:
            self.leaked.append(blob_id)
        self.downloads.append((blob_id, False))
        blob = self.blobs.get(blob_id)
        if blob is None or not request.query.get("tempauth"):
            return web.Response(status=404)
        return web.Response(body=blob[0], content_type=blob[1])
