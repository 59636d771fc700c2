"""What a turn asks the store about budgets and the rate limit, and what it reads back.

The reading is taken in the round trip that loads the history (`Store.load(..., meter=)`), so
enforcing budgets costs the answer path no extra round trip: one more script in the same
pipeline (Redis) or a few dictionary reads (in process).
"""

from __future__ import annotations

from dataclasses import dataclass

# A minute's rate counter lives a little longer than its minute, then expires by itself.
RATE_TTL_SECONDS = 120


@dataclass(frozen=True, slots=True)
class MeterRequest:
    """Today's token budgets to check and the user's rate counter to take a slot from.

    `dimensions` are usage dimensions (`u|<user>`, `c|<channel>`, `w|<workspace>`), each with
    its default daily budget (0 = unlimited) that a per-scope budget set from the chat
    overrides. `rate_limit` 0 takes no slot.
    """

    day: str
    dimensions: tuple[tuple[str, int], ...]
    rate_user: str
    minute: int
    rate_limit: int = 0


@dataclass(frozen=True, slots=True)
class MeterReading:
    """Tokens used today and the budget in force per dimension; what, if anything, refuses.

    `over` is the first dimension whose budget is used up (then no rate slot was taken);
    `rate_limited` means the user already had `rate_limit` messages this minute. A turn goes
    to the model only when neither is set, and then it holds one of this minute's slots.
    """

    used: dict[str, int]
    budgets: dict[str, int]
    over: str | None = None
    rate_limited: bool = False

    @property
    def admitted(self) -> bool:
        return self.over is None and not self.rate_limited


def check(
    request: MeterRequest, used: dict[str, int], overrides: dict[str, int | None], rate_count: int
) -> tuple[MeterReading, bool]:
    """The rule both stores apply (Redis in `lua/meter.lua`): returns the reading and whether
    a rate slot is to be taken. `rate_count` is the user's count this minute before this turn."""
    budgets: dict[str, int] = {}
    over = None
    for dim, default in request.dimensions:
        set_here = overrides.get(dim)
        budget = default if set_here is None else set_here
        budgets[dim] = budget
        if over is None and budget > 0 and used.get(dim, 0) >= budget:
            over = dim
    limited = over is None and request.rate_limit > 0 and rate_count >= request.rate_limit
    take = over is None and request.rate_limit > 0 and not limited
    return MeterReading(dict(used), budgets, over, limited), take
