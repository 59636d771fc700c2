"""Who the bot is on Slack: one `auth.test`, shared by start-up and every request bolt handles.

bolt's own single-workspace authorization makes its own `auth.test` on the first request and
caches it, without a lock: a burst of events right after start made one call per concurrent
request (101 for 100 mentions; on real Slack they count against the method's rate limit), and
the one start-up had made already was not used. `BotIdentity.authorize` is bolt's public
`authorize` hook instead: it answers every request from the start-up result, and when there is
none yet (Slack was unreachable at start), concurrent requests share one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_sdk.web.async_client import AsyncWebClient


class BotIdentity:
    """The bot token's `auth.test` answer, asked once (single flight) and then kept."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self.auth: Any = None  # the auth.test response, once Slack has given it
        self._asking: asyncio.Future[Any] | None = None

    async def get(self) -> Any:
        """auth.test's answer; callers that arrive while it is asked wait for the same call."""
        if self.auth is not None:
            return self.auth
        if self._asking is None:
            self._asking = asyncio.ensure_future(self._ask())
        asking = self._asking
        try:
            return await asyncio.shield(asking)
        finally:
            if asking.done() and self._asking is asking:
                self._asking = None  # a failure is not remembered: the next request asks again

    async def _ask(self) -> Any:
        self.auth = await self._client.auth_test()
        return self.auth

    def authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """bolt's `authorize` function (a plain function: bolt passes arguments by name and
        would take a bound method's `self` for one of them)."""

        async def authorize(user_id: str | None) -> AuthorizeResult:
            return await self.authorize(user_id)

        return authorize

    async def authorize(self, user_id: str | None) -> AuthorizeResult:
        """The installation every request belongs to, for the request's user `user_id`.

        The same fields bolt's single-workspace authorization fills from auth.test of a bot
        token. A failed auth.test raises: bolt answers 500 and the adapter asks Slack to
        retry (503); a refused token (SlackApiError) makes bolt acknowledge and drop the event.
        """
        auth = await self.get()
        headers = getattr(auth, "headers", None) or {}
        return AuthorizeResult(
            enterprise_id=auth.get("enterprise_id"),
            team_id=auth.get("team_id"),
            team=auth.get("team"),
            url=auth.get("url"),
            bot_id=auth.get("bot_id"),
            bot_user_id=auth.get("user_id"),
            bot_token=self._client.token,
            bot_scopes=headers.get("x-oauth-scopes"),
            user_id=user_id,
        )
