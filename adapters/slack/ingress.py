"""What an HTTP request must be before bolt sees it: signed by Slack, fresh, and a body Slack sends.

Checked once, here: the signature over the raw bytes (401), then the body (400). bolt is built
with `request_verification_enabled=False`, so it does not hash the body a second time; Socket
Mode envelopes come over a connection the app token opened and carry no signature at all.
Then `bolt_request()` hands bolt the body as it was parsed here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.async_app import AsyncBoltRequest

log = logging.getLogger("threadwise.slack")

SIGNATURE_MAX_AGE_SECONDS = 300


def signature_ok(
    secret: str, raw: bytes, timestamp: str | None, signature: str | None, now: float
) -> bool:
    """Slack's v0 request signature over the raw bytes, with a 5-minute timestamp window.

    Works on bytes (a body that is not UTF-8 is still checked, then refused as malformed), and
    never raises on hostile headers — unlike slack_sdk's `SignatureVerifier`, which is why this
    is not that.
    """
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > SIGNATURE_MAX_AGE_SECONDS:
        return False
    base = b"v0:" + timestamp.encode("ascii", "replace") + b":" + raw
    expected = "v0=" + hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


def parse_body(text: str, content_type: str | None) -> dict[str, Any]:
    """The request body as Slack meant it: JSON (events) or a form (slash commands).

    Raises ValueError when it is neither.
    """
    if (content_type or "").split(";")[0].strip() == "application/json" or text.lstrip().startswith(
        "{"
    ):
        body = json.loads(text)
    else:
        form = dict(parse_qsl(text, keep_blank_values=True))
        body = json.loads(form["payload"]) if "payload" in form else form
    if not isinstance(body, dict):
        raise ValueError("body is not an object")
    return body


def malformed(body: dict[str, Any]) -> str | None:
    """Why a (signed) body is not something Slack sends, or None when it looks right."""
    kind = body.get("type")
    if body.get("ssl_check"):
        return None
    if "command" in body:
        return None if isinstance(body.get("command"), str) else "command is not a string"
    if not isinstance(kind, str) or not kind:
        return "no type"
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event"
    if kind == "url_verification" and not isinstance(body.get("challenge"), str):
        return "url_verification without a challenge"
    return None


@dataclass(frozen=True, slots=True)
class Admitted:
    """A signed, well-formed request for bolt: its text and the body parsed from it."""

    text: str
    body: dict[str, Any]

    @property
    def needs_identity(self) -> bool:
        """Whether answering it needs the bot's identity: all but Slack's URL handshake."""
        return self.body.get("type") not in ("url_verification", "ssl_check")


def _refused(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


async def admit(request: web.Request, signing_secret: str) -> Admitted | web.StreamResponse:
    """The request for bolt, or the answer Slack gets instead: 401 unsigned or stale, 400
    malformed, 200 for what is acknowledged but handled by nobody."""
    raw = await request.read()
    if not signature_ok(
        signing_secret,
        raw,
        request.headers.get("X-Slack-Request-Timestamp"),
        request.headers.get("X-Slack-Signature"),
        time.time(),
    ):
        log.warning("slack request refused: bad signature or stale timestamp")
        return _refused(401, "invalid signature")
    try:
        text = raw.decode("utf-8")
        body = parse_body(text, request.headers.get("Content-Type"))
    except (UnicodeDecodeError, ValueError, KeyError, RecursionError) as e:
        # RecursionError: JSON nested deeper than the parser goes (a few KB of "[[[[").
        log.warning("slack request refused: malformed body (%s)", type(e).__name__)
        return _refused(400, "malformed body")
    problem = malformed(body)
    if problem:
        log.warning("slack request refused: %s", problem)
        return _refused(400, "malformed body")
    if body.get("type") == "app_rate_limited":
        log.warning("slack is rate-limiting event deliveries to this app")
        return web.Response(status=200)
    if not (
        "command" in body
        or body.get("ssl_check")
        or body.get("type") in ("event_callback", "url_verification", "block_actions")
    ):
        # Other interactivity (shortcuts, views): the bot offers none, nothing here answers it.
        log.debug("slack request of type %s acknowledged unhandled", body.get("type"))
        return web.Response(status=200)
    return Admitted(text, body)


def bolt_request(admitted: Admitted, request: web.Request) -> AsyncBoltRequest | web.Response:
    """bolt's request for an admitted one, with the body parsed as it was here; 400 when bolt's
    context extraction cannot take the body's shape."""
    try:
        headers = dict(request.headers)
        bolt_req = AsyncBoltRequest(body=admitted.text, query=request.query_string, headers=headers)
        if bolt_req.body != admitted.body:
            # bolt's parser takes any form body containing "payload" (a slash command's text
            # can) for an interactivity payload; give it the body as Slack meant it, as JSON.
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            headers["Content-Type"] = "application/json"
            bolt_req = AsyncBoltRequest(
                body=json.dumps(admitted.body), query=request.query_string, headers=headers
            )
    except (TypeError, AttributeError, KeyError, ValueError) as e:
        # bolt's context extraction assumes Slack's shapes (e.g. `user` an object or id)
        log.warning("slack request refused: malformed body (%s)", type(e).__name__)
        return _refused(400, "malformed body")
    return bolt_req
