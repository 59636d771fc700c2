"""Trust boundaries of the Teams edge: where the bot's token may go, what it may say.

- Outbound hosts: every connector call carries the bot's Bot Framework bearer token, so the
  activity's `serviceUrl` is checked with the Agents SDK's own `OutboundHostValidator` (hosting
  core: https only, no user info, no loopback/private/link-local addresses, host suffix match)
  before a connector client is made. It is given only the Bot Framework service hosts of the
  SDK's default list: the rest of that list (`sharepoint.com`, `blob.core.windows.net`,
  `svc.ms`, `graph.microsoft.com`) is for attachment downloads, and anyone can own a
  subdomain of the first two. In anonymous mode (no credentials, local test clients only)
  the opposite holds: only loopback service URLs, so the bot can never be made to POST to
  another machine.
- Channels: Web Chat and Direct Line users of the same bot registration choose their own
  `from`; only the `channelId`s in TEAMS_ALLOWED_CHANNELS are served.
- Text the bot posts: the model (and commands echoing what users typed) must not create a
  Teams mention. A mention needs `<at>…</at>` in the text *and* a mention entity; the bot never
  attaches mention entities, and `<at>` tags in its text are broken so they read as typed.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from urllib.parse import urlsplit

from microsoft_agents.hosting.core import OutboundHostValidator

log = logging.getLogger("threadwise.teams")

# The Bot Framework service hosts in the SDK's `_DEFAULT_MICROSOFT_HOSTS`: the Bot Connector
# and channel services, Teams' regional service URLs (smba.trafficmanager.net/<region>/) and
# the Teams government clouds (smba.infra.gcc.teams.microsoft.com, *.teams.microsoft.us).
BOT_FRAMEWORK_SERVICE_HOSTS = (
    "botframework.com",
    "smba.trafficmanager.net",
    "teams.microsoft.com",
    "teams.microsoft.us",
)

_SERVICE_HOSTS = OutboundHostValidator(
    list(BOT_FRAMEWORK_SERVICE_HOSTS), enabled=True, include_default_microsoft_hosts=False
)

# `<at>`, `</at>`, `<at …>` (any case): the Teams mention markup. A fixed pattern with no
# repetition, so one linear pass whatever the text.
_AT_TAG = re.compile(r"</?at(?=[\s>/])", re.IGNORECASE)
# Breaks the tag name without changing what the reader sees (U+2060 WORD JOINER).
_BREAK = "\u2060"


def is_loopback_host(host: str | None) -> bool:
    """127.0.0.0/8, ::1 or `localhost` (the names a server can bind to on this machine only)."""
    if not host:
        return False
    host = host.strip().strip("[]").rstrip(".").lower()
    if host == "localhost":  # not `*.localhost`: a resolver may send those anywhere
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(url: str | None) -> str:
    """The URL's host, for logs (never the path or query, which can hold anything)."""
    try:
        return (urlsplit(url or "").hostname or "?")[:100]
    except ValueError:
        return "?"


def is_loopback_url(url: str | None) -> bool:
    """An http(s) URL on this machine, without user info."""
    try:
        parts = urlsplit(url or "")
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        return False
    return is_loopback_host(host)


def service_url_allowed(url: str | None, *, anonymous: bool) -> bool:
    """Whether the bot may post (with its token, or in anonymous mode without) to `url`."""
    if not url:
        return False
    if anonymous:
        return is_loopback_url(url)
    return _SERVICE_HOSTS.is_allowed(url)


def channel_allowed(channel_id: object, allowed: frozenset[str]) -> bool:
    return str(channel_id or "").lower() in allowed


def neutral_text(text: str) -> str:
    """`text` with Teams mention tags broken: `<at>Alice</at>` reads as typed, pings no one.

    An invisible character goes right after the tag name (`<at\u2060>`), which is no longer the
    `at` tag. Not `&lt;at&gt;`: a streamed reply sends the full text so far with each update and
    each update must extend the last, so the change to a text may depend only on what comes
    before it; a text ending in `<at` is left as it is and still a prefix of the next update.
    """
    if "<" not in text:
        return text
    return _AT_TAG.sub(lambda m: m.group() + _BREAK, text)


def without_mentions(entities: list | None) -> list | None:
    """The bot's own entities (stream info, AI label), never a mention."""
    if not entities:
        return entities
    return [e for e in entities if _entity_type(e) != "mention"]


def _entity_type(entity: object) -> str:
    kind = entity.get("type") if isinstance(entity, dict) else getattr(entity, "type", None)
    return str(kind or "").lower()
