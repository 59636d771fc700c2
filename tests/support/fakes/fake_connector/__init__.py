"""A local fake of the Bot Framework connector (the `serviceUrl` Teams activities carry).

It speaks the wire format bots use to reply:

- `POST /v3/conversations/{conversationId}/activities` (send to conversation)
- `POST /v3/conversations/{conversationId}/activities/{replyToId}` (reply to an activity)

Each accepted activity is recorded and answered `201 {"id": …}`. The streaming protocol is
checked the way Teams checks it: the first update (`streamSequence` 1) opens a stream and gets
its id; later updates must carry that `streamId`, an increasing `streamSequence` and text that
extends what was shown; after the `final` message the stream is closed (403
ContentStreamNotAllowed); streaming outside 1:1 chats is refused (400 BadArgument).

Failures can be scheduled: `fail(403, code="ContentStreamNotAllowed")`, `fail(429,
retry_after=1)`, `fail(503)`, each for the next `count` matching posts.

It also serves a local Bot Framework key set (`fc.issuer`, a `LocalIssuer` made on first use:
`fc.issuer.jwks_url`, `fc.authorization(app_id)` → a cached `Bearer` header for activities that
name this connector as their `serviceUrl`), so a service under test can run with real token
checks against it. The bot refuses to post to a loopback service URL with its token; a test lets
it with `allow_loopback_service_urls(monkeypatch)` (in-process) or the serve child's
tests/support/local_auth/sitecustomize.py.

In-process: `async with FakeConnector() as fc:` (`fc.url`, `fc.activities`, `fc.fail(...)`).
Standalone: `python -m tests.support.fakes.fake_connector --port N` prints `READY <url>`; then
`GET /_fake/activities`, `POST /_fake/fail` (JSON: status, count, code, retry_after, match),
`POST /_fake/reset`.

The package: activities.py (`Recorded`, `Failure`, `stream_info`, `opens_stream`), server.py
(`FakeConnector`), loopback.py (`allow_loopback_service_urls`), __main__.py (standalone); the
attachments it hosts are tests/support/fakes/fake_teams_files.py.
"""

from tests.support.fakes.fake_connector.activities import (
    Failure,
    Recorded,
    opens_stream,
    stream_info,
)
from tests.support.fakes.fake_connector.loopback import allow_loopback_service_urls
from tests.support.fakes.fake_connector.server import FakeConnector

__all__ = [
    "Failure",
    "FakeConnector",
    "Recorded",
    "allow_loopback_service_urls",
    "opens_stream",
    "stream_info",
]
