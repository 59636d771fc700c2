"""The HTTP plumbing under every route of the fake: recording a request, the response headers,
error responses and the ``api_key`` check."""

from __future__ import annotations

import json
import uuid
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.support.fakes.fake_openai.behaviours import Error
from tests.support.fakes.fake_openai.wire import RecordedRequest, _dumps


class RequestPlumbing:
    """Request recording and error responses, shared by the model routes and the chat handler."""

    api_key: str | None
    requests: list[RecordedRequest]

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        recorded = RecordedRequest(request.method, request.path, CIMultiDict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    def _response_headers(self) -> dict[str, str]:
        request_id = str(uuid.uuid4())
        return {"x-request-id": request_id, "apim-request-id": request_id, "x-ms-region": "local"}

    def _error_response(self, error: Error) -> web.Response:
        headers = self._response_headers() | dict(error.headers)
        if isinstance(error.body, str | bytes):
            raw = error.body.encode() if isinstance(error.body, str) else error.body
            return web.Response(
                status=error.status,
                body=raw,
                headers=headers,
                content_type="application/json",
            )
        return web.json_response(error.body, status=error.status, headers=headers, dumps=_dumps)

    def _auth_error(self, recorded: RecordedRequest) -> Error | None:
        if self.api_key is None:
            return None
        headers = recorded.headers
        if headers.get("api-key") == self.api_key:
            return None
        if headers.get("Authorization") == f"Bearer {self.api_key}":
            return None
        return Error(
            401,
            {
                "error": {
                    "code": "401",
                    "message": (
                        "Access denied due to invalid subscription key or wrong API endpoint. "
                        "Make sure to provide a valid key for an active subscription and use a "
                        "correct regional API endpoint for your resource."
                    ),
                }
            },
        )
