"""Letting the bot post with its token to the loopback URLs where the fakes listen.

The bot refuses to post to a loopback service URL with its token; a test lets it with
`allow_loopback_service_urls(monkeypatch)` (in-process) or the serve child's
tests/support/local_auth/sitecustomize.py.
"""

from __future__ import annotations

import ipaddress

from microsoft_agents.hosting.core import OutboundHostValidator
from yarl import URL


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def allow_loopback_service_urls(monkeypatch) -> None:
    """Let the bot post with its token to plain-http loopback URLs (where fakes listen).

    The same patch tests/support/local_auth/sitecustomize.py makes in a serve child: the
    Agents SDK's outbound host check admits loopback too; every other host is judged as before.
    """
    sdk_is_allowed = OutboundHostValidator.is_allowed

    def or_loopback(self, url) -> bool:
        parsed = URL(str(url))
        if parsed.scheme == "http" and _loopback(parsed.host):
            return True
        return sdk_is_allowed(self, url)

    monkeypatch.setattr(OutboundHostValidator, "is_allowed", or_loopback)
