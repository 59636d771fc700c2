"""A local fake of the Slack Web API (and of Slack's side of the Events API), for tests.

It speaks the real wire format, so the adapter is tested through the real ``slack_sdk``
client pointed at it with ``base_url``::

    async with FakeSlack(users={"U1": "Ann"}) as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.api_url)
        slack.fail("chat.startStream", error="not_allowed")      # streaming refused, once
        slack.fail("chat.postMessage", status=429, retry_after=1) # rate limited, once
        ...
        assert slack.methods() == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
        assert slack.thread_texts("C1", "1700000000.000100") == ["the reply"]

Every call is recorded (method, merged query/form/JSON params, monotonic time). Messages the
bot posts are kept with their final Markdown, streaming state and thread, so a test can read a
thread the way a person would see it. Slash-command answers go to ``slack.response_url()``.

It also plays Slack towards the service: `signed_headers()` signs an Events API / slash body
the way Slack does, and `event_callback()`, `app_mention()`, `message()`, `slash_command()`
build the payloads — also as a Slack Connect channel or an Enterprise Grid org delivers them
(`event_callback(team_id=<where it happened>, installation={...}, shared=True)`; a
`FakeSlack(enterprise_id=…, org_install=True)` answers auth.test as an org-wide install).

Standalone::

    python -m tests.support.fakes.fake_slack --port 0
    # prints "READY http://127.0.0.1:PORT/api/" (the SLACK_API_URL) once listening

with ``GET /_fake/calls``, ``GET /_fake/messages``, ``GET /_fake/responses``,
``POST /_fake/fail`` (JSON: method, error | status, times, retry_after), ``POST /_fake/reset``,
``POST /_fake/config`` (JSON: socket_mode_url, users).

The package: state.py (records, state, `SlackError`), web_api.py (the Web API methods),
server.py (`FakeSlack`), files.py (file hosting), events.py (Slack's requests to the service),
core_doubles.py (`MemoryCache`, `RecordingHandler`), __main__.py (standalone).
"""

from tests.support.fakes.fake_slack.core_doubles import MemoryCache, RecordingHandler
from tests.support.fakes.fake_slack.events import (
    app_mention,
    assistant_thread_event,
    block_actions,
    event_callback,
    form,
    message,
    new_ts,
    signed_headers,
    slash_command,
)
from tests.support.fakes.fake_slack.server import FakeSlack
from tests.support.fakes.fake_slack.state import (
    DEFAULT_APP_TOKEN,
    DEFAULT_SIGNING_SECRET,
    DEFAULT_TOKEN,
    MARKDOWN_LIMIT,
    TEXT_LIMIT,
    Call,
    FakeSlackState,
    Message,
    SlackError,
)

__all__ = [
    "DEFAULT_APP_TOKEN",
    "DEFAULT_SIGNING_SECRET",
    "DEFAULT_TOKEN",
    "MARKDOWN_LIMIT",
    "TEXT_LIMIT",
    "Call",
    "FakeSlack",
    "FakeSlackState",
    "MemoryCache",
    "Message",
    "RecordingHandler",
    "SlackError",
    "app_mention",
    "assistant_thread_event",
    "block_actions",
    "event_callback",
    "form",
    "message",
    "new_ts",
    "signed_headers",
    "slash_command",
]
