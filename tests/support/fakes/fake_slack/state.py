"""What the fake Slack records and the errors it answers: calls, the bot's messages, its state.

`FakeSlackState` is everything a test reads back (`slack.state`, reset by `slack.reset()`);
`SlackError(error)` raised in a Web API method is answered as `{"ok": false, "error": …}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_TOKEN = "xoxb-fake-bot-token"
DEFAULT_APP_TOKEN = "xapp-fake-app-token"
DEFAULT_SIGNING_SECRET = "fake-signing-secret"
MARKDOWN_LIMIT = 12_000  # markdown_text per call, as Slack documents
TEXT_LIMIT = 40_000


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    t: float  # time.monotonic() when the call arrived
    status: int = 200
    ok: bool = True
    error: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    thread_ts: str | None = None
    streaming: bool = False
    deleted: bool = False
    edits: int = 0
    user: str = ""
    recipient_user_id: str | None = None
    recipient_team_id: str | None = None
    blocks: list[Any] | None = None  # the message's blocks, as last posted, updated or stopped


@dataclass
class FakeSlackState:
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[str, str], Message] = field(default_factory=dict)
    reactions: set[tuple[str, str, str]] = field(default_factory=set)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    suggested_prompts: list[dict[str, Any]] = field(default_factory=list)
    titles: list[dict[str, Any]] = field(default_factory=list)
    ephemerals: list[dict[str, Any]] = field(default_factory=list)
    views: list[dict[str, Any]] = field(default_factory=list)  # views.publish: user_id, view
    responses: list[dict[str, Any]] = field(default_factory=list)


class SlackError(Exception):
    def __init__(self, error: str):
        super().__init__(error)
        self.error = error
