"""Display names of Slack users, from `users.info`, cached through the core's small cache."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.api import log_failure
from bot.messages import Cache

log = logging.getLogger("threadwise.slack")

NAME_TTL_SECONDS = 3600
LOCAL_TTL_SECONDS = 300  # in-process copy: a rename shows within five minutes on every replica
LOCAL_MAX_NAMES = 10_000  # bounded: about a megabyte
MAX_LOOKUPS_PER_MESSAGE = 10  # mentions beyond this stay as their ids: a message is answered fast


def display_name(user: dict[str, Any]) -> str | None:
    """The name Slack shows: profile display name, else real name, else the handle."""
    profile = user.get("profile") or {}
    for candidate in (
        profile.get("display_name"),
        profile.get("real_name"),
        user.get("real_name"),
        user.get("name"),
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return None


class UserNames:
    """`users.info` lookups behind the shared cache (key `slack:user:<team>:<user>`, 1 h).

    In front of the shared cache, a bounded in-process copy (5 min, 10,000 names) saves the
    Redis round trip on almost every message. A failed lookup is not cached and falls back to
    the user id; the cache failing is treated as a miss. Nothing here ever raises.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        cache: Cache,
        ttl_seconds: int = NAME_TTL_SECONDS,
        *,
        local_ttl: float = LOCAL_TTL_SECONDS,
        local_max: int = LOCAL_MAX_NAMES,
    ):
        self._client = client
        self._cache = cache
        self._ttl = ttl_seconds
        self._local: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._local_ttl = local_ttl
        self._local_max = local_max

    @staticmethod
    def key(team: str, user: str) -> str:
        return f"slack:user:{team}:{user}"

    def _remember(self, key: str, name: str) -> None:
        self._local[key] = (time.monotonic() + self._local_ttl, name)
        self._local.move_to_end(key)
        while len(self._local) > self._local_max:
            self._local.popitem(last=False)

    async def name(self, team: str, user: str) -> str:
        key = self.key(team, user)
        local = self._local.get(key)
        if local is not None:
            if local[0] > time.monotonic():
                return local[1]
            del self._local[key]
        try:
            cached = await self._cache.cache_get(key)
        except Exception as e:  # the cache is an optimisation; Redis trouble must not stop replies
            log.debug("user name cache read failed: %s", type(e).__name__)
            cached = None
        if cached:
            self._remember(key, cached)
            return cached
        try:
            resp = await self._client.users_info(user=user)
        except Exception as e:
            log_failure("users.info", e)
            return user
        name = display_name(resp.get("user") or {}) or user
        try:
            await self._cache.cache_set(key, name, self._ttl)
        except Exception as e:
            log.debug("user name cache write failed: %s", type(e).__name__)
        self._remember(key, name)
        return name

    async def names(self, team: str, users: list[str]) -> dict[str, str]:
        wanted = users[:MAX_LOOKUPS_PER_MESSAGE]
        found = await asyncio.gather(*(self.name(team, u) for u in wanted))
        return dict(zip(wanted, found, strict=True))
