"""Teams' part of `threadwise doctor`: the bot's Entra credentials, or a warning when anonymous."""

from __future__ import annotations

import asyncio

from adapters.teams.auth import CredentialsError, verify_credentials
from bot.doctor import Check

ENTRA_TIMEOUT = 30.0


async def check_teams(
    *, app_id: str | None, app_password: str | None, tenant_id: str | None, app_type: str
) -> Check:
    """A Bot Framework token got the way replies get theirs; no app id means anonymous mode."""
    if not app_id:
        return Check(
            "teams",
            True,
            "TEAMS_ALLOW_ANONYMOUS=true: no auth, anyone who reaches the port is a Teams user",
            "for local test clients only: keep HOST on a loopback address (127.0.0.1) and "
            "unset TEAMS_ALLOW_ANONYMOUS anywhere else",
            required=False,
            warn=True,
        )
    tried = f"Bot Framework token for app {app_id} ({app_type})"
    try:
        async with asyncio.timeout(ENTRA_TIMEOUT):
            await verify_credentials(
                app_id=app_id, app_password=app_password, tenant_id=tenant_id, app_type=app_type
            )
    except CredentialsError as exc:
        if exc.unreachable:
            return Check(
                "teams",
                False,
                tried,
                f"{exc}: check the network, DNS and any proxy to login.microsoftonline.com "
                "(the credentials were not tried)",
            )
        return Check(
            "teams",
            False,
            tried,
            f"{exc}: check MICROSOFT_APP_ID / "
            "MICROSOFT_APP_PASSWORD / MICROSOFT_APP_TENANT_ID / MICROSOFT_APP_TYPE",
        )
    except TimeoutError:
        return Check(
            "teams", False, tried, f"no answer from Microsoft Entra ID in {ENTRA_TIMEOUT:.0f} s"
        )
    return Check("teams", True, tried)
