"""`!usage`: tokens and replies for this channel and workspace, today and over 30 days."""

from __future__ import annotations

import datetime as dt

from bot.commands.quota import budget_lines
from bot.commands.row import Context
from bot.prompts import channel_scope, workspace_scope
from bot.quota import dimensions
from bot.store import UsageTotals


async def cmd_usage(ctx: Context) -> str:
    m = ctx.message
    today = dt.datetime.now(dt.UTC).date()
    days = [(today - dt.timedelta(days=i)).isoformat() for i in range(30)]
    rows = []
    for label, dim in (
        ("this channel", f"c|{channel_scope(m.platform, m.workspace, m.channel)}"),
        ("this workspace", f"w|{workspace_scope(m.platform, m.workspace)}"),
    ):
        per_day = await ctx.store.usage(days, dim)
        day = per_day[days[0]]
        month = sum(per_day.values(), UsageTotals())
        rows.append(
            f"• {label}: today {day.prompt_tokens:,} prompt + {day.completion_tokens:,} "
            f"completion tokens in {_replies(day)}; last 30 days "
            f"{month.prompt_tokens:,} + {month.completion_tokens:,} in {_replies(month)}"
        )
    dims = {k: v for k, v in dimensions(m).items() if k != "user"}
    rows += ["Daily budgets today:", *await budget_lines(ctx, dims)]
    return "Token usage (UTC days):\n" + "\n".join(rows)


def _replies(totals: UsageTotals) -> str:
    """ "1 reply", "5 replies", marked when some counts are Threadwise's own estimates (the
    server reported no usage for them)."""
    n = totals.replies
    text = f"{n:,} repl{'y' if n == 1 else 'ies'}"
    if totals.estimated >= n and n:
        return text + " (estimated)"
    if totals.estimated:
        return text + f" ({totals.estimated:,} estimated)"
    return text
