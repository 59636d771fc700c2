"""The fake world the stack's tests live in: the workspace, its people, fresh ids, conversation
keys, and the Slack events they send. Also the figures tests count for the closing note."""

from __future__ import annotations

import itertools
import time
import uuid
from collections import Counter
from typing import Any

from tests.support.fakes.fake_slack import DEFAULT_SIGNING_SECRET
from tests.support.fixtures.teams.harness import TENANT

SECRET = DEFAULT_SIGNING_SECRET
TEAM = "T0FAKE"  # the fake Slack workspace
SLACK_ADMIN = "UADMIN"
USERS = {
    SLACK_ADMIN: "Ada Admin",
    "U1": "Ann",
    "U2": "Bob Member",
    "U3": {"display_name": "", "real_name": "Cy Tab"},
}
TEAMS_ADMIN = "6a1c5f0e-7b2d-4c3e-9f8a-1b2c3d4e5f60"  # Megan, the fixtures' 1:1 sender
TEAMS_MEMBER = "0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a0f9"  # Adele, the group chat's sender

# What the figures in the closing note count; tests add to it, the terminal summary prints it.
FIGURES: Counter[str] = Counter()


def figure(kind: str, n: int = 1) -> None:
    FIGURES[kind] += n


# -- ids ---------------------------------------------------------------------------------------

_seq = itertools.count(1)


def serial() -> int:
    """The next number of the sequence fresh timestamps and activity ids take theirs from."""
    return next(_seq)


def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def dm() -> str:
    return "D" + uuid.uuid4().hex[:9].upper()


def ts() -> str:
    """A fresh, increasing Slack ts."""
    return f"{int(time.time())}.{serial():06d}"


def slack_key(ch: str, thread: str | None) -> str:
    return f"slack:{TEAM}:{ch}" + (f":{thread}" if thread else "")


def teams_key(activity: dict) -> str:
    return f"teams:{TENANT}:{activity['conversation']['id']}"


# -- events ------------------------------------------------------------------------------------


def mention(
    text: str,
    *,
    ch: str,
    at: str | None = None,
    thread: str | None = None,
    user: str = "U1",
    **extra: Any,
) -> dict:
    """An `app_mention` as Slack sends it (`text` should carry `<@UBOT>`)."""
    at = at or ts()
    event = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": at,
        "team": TEAM,
        "channel": ch,
        "event_ts": at,
    }
    if thread:
        event["thread_ts"] = thread
    event.update(extra)
    return event


def message(
    text: str,
    *,
    ch: str,
    at: str | None = None,
    thread: str | None = None,
    user: str | None = "U1",
    channel_type: str = "channel",
    **extra: Any,
) -> dict:
    """A `message` event (channel, thread reply or DM) as Slack sends it."""
    at = at or ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": at,
        "team": TEAM,
        "channel": ch,
        "event_ts": at,
        "channel_type": channel_type,
    }
    if user is not None:
        event["user"] = user
    if thread:
        event["thread_ts"] = thread
    event.update(extra)
    return event
