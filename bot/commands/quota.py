"""`!quota` (anyone: what is left today), `!quota set | reset | history` (workspace admins).

Budgets set here override the QUOTA_*_DAILY_TOKENS settings for one user, this channel or
this workspace; every change is recorded in the budget audit (who, when, dimension, old and
new value) like prompt changes, and logged without message text. A scoped admin can only name
dimensions of the workspace the command is typed in: the dimension is built from this
conversation, never read from the text.
"""

from __future__ import annotations

import logging
import re
import time

from bot.commands.row import Context, UsageError, split_word
from bot.quota import LABELS, Quotas, dimensions, resets_in
from bot.store import AuditRecord

log = logging.getLogger("threadwise.commands")

KINDS = ("user", "channel", "workspace")
_MENTION = re.compile(r"<@([A-Za-z0-9]+)(?:\|[^>]*)?>")
_USER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TOKENS = re.compile(r"(\d[\d,_]*)([kKmM]?)")


def _quotas(ctx: Context) -> Quotas:
    return ctx.quotas if ctx.quotas is not None else Quotas()


def _amount(used: int, budget: int) -> str:
    if budget <= 0:
        return f"{used:,} tokens used, no budget"
    return f"{max(budget - used, 0):,} of {budget:,} tokens left ({used:,} used)"


async def budget_lines(ctx: Context, dims: dict[str, str]) -> list[str]:
    """One line per dimension: used today against the budget in force, and where it is from."""
    q = _quotas(ctx)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    set_here = await ctx.store.budgets(list(dims.values()))
    lines = []
    for dim in dims.values():
        per_day = await ctx.store.usage([today], dim)
        used = per_day[today].prompt_tokens + per_day[today].completion_tokens
        budget = set_here[dim] if set_here[dim] is not None else q.defaults()[dim[0]]
        source = "set by an admin" if set_here[dim] is not None else "default"
        lines.append(f"• {LABELS[dim[0]]} budget: {_amount(used, budget)} — {source}")
    return lines


async def cmd_quota(ctx: Context) -> str:
    if ctx.args.strip():
        raise UsageError("`!quota` takes nothing; admins: `!quota set`, `!quota reset`.")
    q = _quotas(ctx)
    lines = ["Today's token budgets (UTC day):", *await budget_lines(ctx, dimensions(ctx.message))]
    lines.append(f"Budgets reset at 00:00 UTC (in {resets_in()}).")
    if q.rate_per_minute:
        lines.append(f"Rate limit: {q.rate_per_minute} messages per minute per user.")
    return "\n".join(lines)


def _target(ctx: Context, rest: str) -> tuple[str, str, str]:
    """(kind, dimension, text after it) from `user ID`, `channel` or `workspace`.

    Slack shows a typed @mention to the bot as the display name, so the user is named by id
    (`U024BE7LH`, or the raw `<@U024BE7LH>` a slash command may carry)."""
    word, rest = split_word(rest)
    kind = word.lower()
    if kind not in KINDS:
        raise UsageError(f"Usage: `{ctx.row.usage()}`: say `user`, `channel` or `workspace`.")
    m = ctx.message
    if kind != "user":
        return kind, dimensions(m)[kind], rest
    who, rest = split_word(rest)
    mention = _MENTION.fullmatch(who)
    uid = mention[1] if mention else who
    if not _USER_ID.fullmatch(uid):
        raise UsageError(
            "Name the user by their id: the Slack member ID (profile → ⋮ → Copy member ID) "
            "or the Teams user's Entra object ID."
        )
    return kind, f"u|{m.platform}:{m.workspace}:{uid}", rest


def _tokens(text: str) -> int:
    m = _TOKENS.fullmatch(text.strip())
    if m is None:
        raise UsageError("The budget is a number of tokens per day, e.g. `200000` or `200k`.")
    n = int(m[1].replace(",", "").replace("_", ""))
    n *= {"": 1, "k": 1000, "m": 1_000_000}[m[2].lower()]
    if n > 10**12:
        raise UsageError("That budget is too large.")
    return n


async def _change(ctx: Context, dim: str, new: int | None) -> str | None:
    action = "reset" if new is None else "set"
    record = AuditRecord(
        time.time(),
        dim,
        ctx.principal,
        ctx.message.user_name,
        action,
        None,
        None if new is None else str(new),
    )
    old = await ctx.store.change_budget(record)
    log.info(
        "budget changed",
        extra={"user": ctx.principal, "dimension": dim, "action": action, "budget": new},
    )
    return old


async def set_quota(ctx: Context) -> str:
    kind, dim, rest = _target(ctx, ctx.args)
    tokens = _tokens(rest)
    await _change(ctx, dim, tokens)
    what = "unlimited" if tokens == 0 else f"{tokens:,} tokens per UTC day"
    return f"Daily budget of {_who(kind, dim)} set: {what}. It applies from the next message."


async def reset_quota(ctx: Context) -> str:
    kind, dim, rest = _target(ctx, ctx.args)
    if rest.strip():
        raise UsageError(f"`!{ctx.row.name}` takes no amount.")
    old = await _change(ctx, dim, None)
    if old is None:
        return f"{_who(kind, dim).capitalize()} had no budget of its own; the default applies."
    return f"Removed the budget of {_who(kind, dim)}; the default applies again."


def _who(kind: str, dim: str) -> str:
    if kind == "user":
        return f"user {dim.rsplit(':', 1)[1]}"
    return f"this {kind}"


async def quota_history(ctx: Context) -> str:
    if ctx.args.strip():
        raise UsageError(f"`!{ctx.row.name}` takes nothing.")
    m = ctx.message
    here = f"{m.platform}:{m.workspace}"
    mine = [
        r
        for r in await ctx.store.budget_history(100)
        if r.scope[2:] == here or r.scope[2:].startswith(here + ":")
    ][:10]
    if not mine:
        return "No budget changes recorded for this workspace."
    out = ["Last budget changes in this workspace (newest first):"]
    for r in mine:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.at))
        new = "default" if r.new is None else f"{int(r.new):,}"
        old = "default" if r.old is None else f"{int(r.old):,}"
        out.append(f"• {when} — {r.who_name} ({r.who}): {r.scope} {old} → {new}")
    return "\n".join(out)
