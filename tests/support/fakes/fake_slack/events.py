"""Slack towards the service: signed request headers and the payloads Slack delivers.

`signed_headers()` signs an Events API / slash body the way Slack does; `event_callback()`,
`app_mention()`, `message()`, `slash_command()`, `assistant_thread_event()` and
`block_actions()` build the payloads — also as a Slack Connect channel or an Enterprise Grid org
delivers them (`event_callback(team_id=<where it happened>, installation={...}, shared=True)`).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from tests.support.fakes.fake_slack.state import DEFAULT_SIGNING_SECRET


def signed_headers(
    body: str | bytes,
    secret: str = DEFAULT_SIGNING_SECRET,
    *,
    timestamp: int | None = None,
    content_type: str = "application/json",
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> dict[str, str]:
    """Headers Slack sends with an Events API or slash-command request, signed with `secret`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    raw = body.encode() if isinstance(body, str) else body
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + raw, hashlib.sha256)
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


_event_seq = itertools.count(1)


def new_ts() -> str:
    """A fresh, increasing Slack-style ts for a person's message."""
    return f"{int(time.time())}.{500000 + next(_event_seq):06d}"


def event_callback(
    event: Mapping[str, Any],
    *,
    team_id: str = "T0FAKE",
    api_app_id: str = "A0FAKE",
    event_id: str | None = None,
    enterprise_id: str | None = None,
    installation: Mapping[str, Any] | None = None,
    shared: bool = False,
) -> dict[str, Any]:
    """The Events API envelope around one event.

    `team_id` (and `enterprise_id`) say where the event happened; `authorizations[0]` is the
    installation it is delivered to — the same workspace unless `installation` overrides it
    (Slack Connect: `shared=True` and another org's `team_id`; an org-wide Grid install:
    `{"team_id": None, "enterprise_id": "E…", "is_enterprise_install": True}`).
    """
    authorization: dict[str, Any] = {
        "enterprise_id": enterprise_id,
        "team_id": team_id,
        "user_id": "UBOT",
        "is_bot": True,
        "is_enterprise_install": False,
    }
    authorization.update(installation or {})
    body: dict[str, Any] = {
        "token": "legacy-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [authorization],
        "is_ext_shared_channel": shared,
    }
    if enterprise_id is not None:
        body["enterprise_id"] = enterprise_id
    return body


def app_mention(
    text: str,
    *,
    user: str = "U1",
    channel: str = "C1",
    ts: str | None = None,
    thread_ts: str | None = None,
    team: str = "T0FAKE",
    **extra: Any,
) -> dict[str, Any]:
    """An `app_mention`; `extra` adds fields (`user_team`, `source_team` in Slack Connect)."""
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": user,
        "text": text,
        "ts": ts or new_ts(),
        "team": team,
        "channel": channel,
        "event_ts": ts or new_ts(),
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


def message(
    text: str,
    *,
    user: str | None = "U1",
    channel: str = "C1",
    channel_type: str = "channel",
    ts: str | None = None,
    thread_ts: str | None = None,
    subtype: str | None = None,
    team: str = "T0FAKE",
    **extra: Any,
) -> dict[str, Any]:
    ts = ts or new_ts()
    event: dict[str, Any] = {
        "type": "message",
        "text": text,
        "ts": ts,
        "team": team,
        "channel": channel,
        "event_ts": ts,
        "channel_type": channel_type,
    }
    if user is not None:
        event["user"] = user
    if thread_ts:
        event["thread_ts"] = thread_ts
    if subtype:
        event["subtype"] = subtype
    event.update(extra)
    return event


def slash_command(
    text: str,
    *,
    response_url: str,
    command: str = "/threadwise",
    user: str = "U1",
    channel: str = "C1",
    team: str = "T0FAKE",
    trigger_id: str | None = None,
    enterprise_id: str | None = None,
    org_install: bool = False,
) -> dict[str, str]:
    """A slash command's form fields (send `urlencode(...)` as the body).

    `team` is the caller's workspace (in a Slack Connect channel, possibly another org's);
    `enterprise_id` / `org_install` are what an Enterprise Grid org adds.
    """
    grid = {"enterprise_id": enterprise_id, "enterprise_name": "Grid"} if enterprise_id else {}
    return {
        **grid,
        "token": "legacy-verification-token",
        "team_id": team,
        "team_domain": "fake",
        "channel_id": channel,
        "channel_name": "directmessage" if channel.startswith("D") else "general",
        "user_id": user,
        "user_name": user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0FAKE",
        "is_enterprise_install": "true" if org_install else "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().int % 10**12}",
    }


def assistant_thread_event(
    kind: str = "assistant_thread_started",
    *,
    user: str = "U1",
    channel: str = "D1",
    thread_ts: str | None = None,
    context_channel: str | None = "C1",
    team: str = "T0FAKE",
) -> dict[str, Any]:
    """`assistant_thread_started` / `assistant_thread_context_changed`: the pane was opened (or
    the person moved to another channel) with `context_channel` in view."""
    context: dict[str, Any] = {"team_id": team, "enterprise_id": None}
    if context_channel:
        context["channel_id"] = context_channel
    return {
        "type": kind,
        "assistant_thread": {
            "user_id": user,
            "channel_id": channel,
            "thread_ts": thread_ts or new_ts(),
            "context": context,
        },
        "event_ts": new_ts(),
    }


def block_actions(
    message: Mapping[str, Any],
    value: str,
    *,
    channel: str,
    user: str = "U1",
    team: str = "T0FAKE",
    action_id: str = "threadwise_feedback",
) -> dict[str, Any]:
    """The interactivity payload of a click on a button of `message` (as Slack sends it: the
    message as posted, the clicked element's `value`). Send it as `form({"payload": json})`."""
    return {
        "type": "block_actions",
        "team": {"id": team, "domain": "fake"},
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
            **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}),
        },
        "trigger_id": f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().int % 10**12}",
        "channel": {"id": channel, "name": "general"},
        "message": dict(message),
        "response_url": "https://hooks.slack.test/actions/fake",
        "actions": [
            {
                "type": "feedback_buttons",
                "action_id": action_id,
                "block_id": "fb",
                "value": value,
                "action_ts": new_ts(),
            }
        ],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def form(fields: Mapping[str, str]) -> str:
    return urlencode(fields)
