"""`!help` and `!reset`."""

from __future__ import annotations

from bot.commands.access import Access
from bot.commands.row import Context, Row, option_scopes

_ADMINS_CAN = "_Admins (BOT_ADMINS) can also change the system prompt and see usage._"


def _listed_usage(ctx: Context, row: Row) -> str | None:
    """How `!help` shows `row` to this caller, or None when `may_run` would refuse it.

    A scoped row shows only the options whose scope the caller may change, and is left out
    when there is none.
    """
    if row.scoped:
        allowed = [opt for opt, scope in option_scopes(ctx.message).items() if ctx.may(row, scope)]
        if not allowed:
            return None
        return f"`{row.usage([o for o in allowed if o])}`"
    if not ctx.may(row):
        return None
    if row.default:
        return f"`!{row.name.split()[0]}` / `{row.usage()}`"
    return f"`{row.usage()}`"


async def cmd_help(ctx: Context) -> str:
    lines = ["Commands you can use here:"]
    admin_rows = False
    for row in ctx.table:
        usage = _listed_usage(ctx, row)
        if usage is None:
            continue
        admin_rows = admin_rows or row.access is not Access.ANYONE
        lines.append(f"• {usage} — {row.summary}")
    if not admin_rows:
        lines.append(_ADMINS_CAN)
    return "\n".join(lines)


async def cmd_reset(ctx: Context) -> str:
    await ctx.store.clear(ctx.message.conversation_key)
    return (
        "Done: I have forgotten this conversation (and its summary, if any). "
        "The next message starts afresh."
    )
