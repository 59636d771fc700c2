"""`!suggestions show | set | reset | history`: the Slack assistant pane's suggested prompts.

Scoped like system prompts (this channel — for a pane, the person's DM with the bot —, the
workspace with `--workspace`, everywhere with `--global`), stored and audited through the
prompt store under scopes of their own (bot/suggestions.py). Without any, the pane shows
`SLACK_SUGGESTED_PROMPTS` (or the built-in ones).
"""

from __future__ import annotations

import time

from bot.commands.row import Context, UsageError
from bot.prompts import GLOBAL, channel_scope, scope_label, workspace_scope
from bot.store import AuditRecord
from bot.suggestions import parse_lines, resolve, stored_scope, to_lines

_FORMAT = "one prompt a line, `Title | message` (at most 4)"


def _scope(ctx: Context) -> str:
    if ctx.scope is None:
        raise RuntimeError(f"{ctx.row.name} ran without a scope")
    return ctx.scope


async def show_suggestions(ctx: Context) -> str:
    m = ctx.message
    scopes = [
        channel_scope(m.platform, m.workspace, m.channel),
        workspace_scope(m.platform, m.workspace),
        GLOBAL,
    ]
    found = await ctx.store.get_prompts([stored_scope(s) for s in scopes])
    prompts, scope = resolve(scopes, found, ())
    if scope is None:
        return (
            "No suggested prompts are set for this channel, workspace or globally: the assistant "
            "pane shows SLACK_SUGGESTED_PROMPTS (or the built-in ones)."
        )
    return f"Suggested prompts in effect here (from the {scope_label(scope)} scope):\n" + "\n".join(
        f"• {p.title} | {p.message}" for p in prompts
    )


async def set_suggestions(ctx: Context) -> str:
    scope = _scope(ctx)
    try:
        prompts = parse_lines(ctx.args)
    except ValueError as exc:
        raise UsageError(f"{exc}. Write {_FORMAT}. Nothing changed.") from None
    text = to_lines(prompts)
    old = await ctx.store.change_prompt(
        AuditRecord(
            time.time(),
            stored_scope(scope),
            ctx.principal,
            ctx.message.user_name,
            "set",
            None,
            text,
        )
    )
    was = " (replacing the previous ones)" if old is not None else ""
    return (
        f"Suggested prompts set for the {scope_label(scope)} scope{was}: {len(prompts)}. "
        "They show in assistant panes opened from now on."
    )


async def reset_suggestions(ctx: Context) -> str:
    scope = _scope(ctx)
    if ctx.args.strip():
        raise UsageError(f"`!{ctx.row.name}` takes only `--workspace` or `--global`.")
    key = stored_scope(scope)
    if (await ctx.store.get_prompts([key])).get(key) is None:
        return f"There were no {scope_label(scope)} suggested prompts to remove."
    await ctx.store.change_prompt(
        AuditRecord(time.time(), key, ctx.principal, ctx.message.user_name, "reset", None, None)
    )
    return f"Removed the {scope_label(scope)} suggested prompts."


async def suggestions_history(ctx: Context) -> str:
    scope = _scope(ctx)
    if ctx.args.strip():
        raise UsageError(f"`!{ctx.row.name}` takes only `--workspace` or `--global`.")
    records = await ctx.store.prompt_history(stored_scope(scope), 10)
    if not records:
        return f"No changes recorded for the {scope_label(scope)} suggested prompts."
    out = [f"Last changes to the {scope_label(scope)} suggested prompts (newest first):"]
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(r.at))
        what = "set" if r.action == "set" else "removed"
        out.append(f"• {when} — {r.who_name} ({r.who}) {what}:")
        text = (r.new if r.action == "set" else r.old) or ""
        out.extend("> " + line for line in text.splitlines() or ["(none)"])
    return "\n".join(out)
