"""Daily token budgets and the per-user rate limit on the answer path (docs/spec.md §4, §6).

The turn asks the store for a reading in the round trip that loads the history
(`MeterRequest` → `Context.meter`), so enforcing costs no extra round trip. Budgets are per UTC
day and count prompt + completion tokens as recorded in the usage counters; a budget an admin
sets with `!quota set` for one user, channel or workspace overrides the setting, which is the
default. Over budget, or over the rate limit, the model is not called and nothing is stored:
the user is told which limit and when it resets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.messages import IncomingMessage
from bot.prompts import channel_scope, workspace_scope
from bot.store import MeterReading, MeterRequest


def user_id(message: IncomingMessage) -> str:
    """The user as usage and data requests name them: `<platform>:<workspace>:<user id>`."""
    return f"{message.platform}:{message.workspace}:{message.user_id}"


def dimensions(message: IncomingMessage) -> dict[str, str]:
    """kind (user, channel, workspace) → usage dimension of this message."""
    return {
        "user": f"u|{user_id(message)}",
        "channel": f"c|{channel_scope(message.platform, message.workspace, message.channel)}",
        "workspace": f"w|{workspace_scope(message.platform, message.workspace)}",
    }


LABELS = {"u": "your", "c": "this channel's", "w": "this workspace's"}


def utc_day(now: float | None = None) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(time.time() if now is None else now))


def resets_in(now: float | None = None) -> str:
    """Time until the next UTC midnight, as `3 h 12 min`."""
    now = time.time() if now is None else now
    left = int(86400 - now % 86400)
    hours, minutes = divmod((left + 59) // 60, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


@dataclass(frozen=True, slots=True)
class Quotas:
    """The defaults from settings (0 = unlimited / off)."""

    user_daily: int = 0
    channel_daily: int = 0
    workspace_daily: int = 0
    rate_per_minute: int = 0

    def defaults(self) -> dict[str, int]:
        return {"u": self.user_daily, "c": self.channel_daily, "w": self.workspace_daily}

    def request(self, message: IncomingMessage, now: float | None = None) -> MeterRequest:
        now = time.time() if now is None else now
        d = self.defaults()
        dims = tuple((dim, d[dim[0]]) for dim in dimensions(message).values())
        return MeterRequest(
            day=utc_day(now),
            dimensions=dims,
            rate_user=user_id(message),
            minute=int(now // 60),
            rate_limit=self.rate_per_minute,
        )

    def refusal(self, reading: MeterReading, now: float | None = None) -> str | None:
        """What to tell the user when the reading refuses the turn; None when admitted."""
        now = time.time() if now is None else now
        if reading.over is not None:
            budget = reading.budgets[reading.over]
            label = LABELS.get(reading.over[0], "a")
            return (
                f"Sorry, {label} daily token budget ({budget:,} tokens per UTC day) is used up, "
                f"so I can't answer now. It resets at 00:00 UTC (in {resets_in(now)})."
            )
        if reading.rate_limited:
            wait = 60 - int(now % 60)
            return (
                f"You're sending messages faster than this bot allows "
                f"({self.rate_per_minute} per minute). Please try again in {wait} s."
            )
        return None


def quotas_from(settings) -> Quotas:
    return Quotas(
        settings.quota_user_daily_tokens,
        settings.quota_channel_daily_tokens,
        settings.quota_workspace_daily_tokens,
        settings.rate_limit_user_per_minute,
    )
