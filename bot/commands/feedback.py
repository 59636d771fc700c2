"""`!feedback`: 👍/👎 on answers in this channel and workspace, today and over 30 days, and
the latest comments (the workspace's). Votes are recorded when people click (bot/feedback.py)."""

from __future__ import annotations

import datetime as dt

from bot.commands.row import Context
from bot.prompts import channel_scope, workspace_scope
from bot.store.votes import VoteCounts

LATEST_COMMENTS = 5
SCAN_VOTES = 1_000  # newest votes looked at for comments: the admin sees recent ones, quickly


def _share(c: VoteCounts) -> str:
    total = c.up + c.down
    return f"👍 {c.up:,} / 👎 {c.down:,}" + (f" ({100 * c.up // total}% 👍)" if total else "")


async def cmd_feedback(ctx: Context) -> str:
    m = ctx.message
    today = dt.datetime.now(dt.UTC).date()
    days = [(today - dt.timedelta(days=i)).isoformat() for i in range(30)]
    workspace = workspace_scope(m.platform, m.workspace)
    rows = []
    for label, dim in (
        ("this channel", f"c|{channel_scope(m.platform, m.workspace, m.channel)}"),
        ("this workspace", f"w|{workspace}"),
    ):
        per_day = await ctx.store.vote_counts(days, dim)
        month = sum(per_day.values(), VoteCounts())
        rows.append(f"• {label}: today {_share(per_day[days[0]])}; last 30 days {_share(month)}")
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).timestamp()
    comments = [
        v
        for v in await ctx.store.recent_votes(since, SCAN_VOTES)
        if v.workspace_scope == workspace and v.comment
    ][:LATEST_COMMENTS]
    out = ["Feedback on answers (UTC days):", *rows]
    if comments:
        out.append("Latest comments:")
        for v in comments:
            when = dt.datetime.fromtimestamp(v.at, dt.UTC).strftime("%Y-%m-%d %H:%M")
            text = v.comment if len(v.comment) <= 300 else v.comment[:300] + "…"
            quoted = "\n".join("> " + line for line in text.splitlines() or [""])
            out.append(f"{'👍' if v.value == 'up' else '👎'} {when} UTC:\n{quoted}")
    else:
        out.append("No comments in the last 30 days.")
    return "\n".join(out)
