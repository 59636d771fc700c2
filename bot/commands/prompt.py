"""`!prompt show | set | reset | history`: one handler per row; access is checked before."""

from __future__ import annotations

import datetime as dt

from bot.commands.row import Context, UsageError
from bot.prompts import PromptTooLong, scope_label, scopes_for


def _body(rest: str) -> str:
    """The text after the command words, as typed: Slack and Teams formatting and newlines kept.

    Text on the command's own line loses only the spaces after the command words; text that
    starts on a later line keeps its indentation (a code block, a nested list). Blank lines
    before it and whitespace after it carry no meaning and go.
    """
    head, newline, tail = rest.partition("\n")
    if head.strip():
        return (head.lstrip() + newline + tail).rstrip()
    # From the line of the first non-blank character (dropping one blank line at a time copied
    # the rest each time: quadratic in blank lines).
    first = len(tail) - len(tail.lstrip())
    return tail[tail.rfind("\n", 0, first) + 1 :].rstrip()


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quote(text: str | None, limit: int | None = 300) -> str:
    if text is None:
        return "_(none)_"
    short = text if limit is None or len(text) <= limit else text[:limit] + "…"
    return "\n".join("> " + line for line in short.splitlines() or [""])


def _no_text(ctx: Context) -> None:
    if ctx.args.strip():
        raise UsageError(f"`!{ctx.row.name}` takes only `--workspace` or `--global`.")


def _scope(ctx: Context) -> str:
    if ctx.scope is None:  # the dispatch names it for every scoped row
        raise RuntimeError(f"{ctx.row.name} ran without a scope")
    return ctx.scope


async def show_prompt(ctx: Context) -> str:
    eff = await ctx.prompts.effective(scopes_for(ctx.message))
    # In full: adapters split long messages, and a clipped prompt would mislead.
    return f"System prompt in effect here (from the {scope_label(eff.scope)} scope):\n" + (
        _quote(eff.text, None)
    )


async def set_prompt(ctx: Context) -> str:
    scope, text = _scope(ctx), _body(ctx.args)
    if not text:
        raise UsageError(f"Usage: `{ctx.row.usage()}` — the prompt text is missing.")
    try:
        old = await ctx.prompts.set(scope, text, ctx.principal, ctx.message.user_name)
    except PromptTooLong as exc:
        raise UsageError(
            f"That prompt is {exc.tokens} tokens; the limit is {exc.limit} "
            "(PROMPT_MAX_TOKENS). Nothing changed."
        ) from None
    was = " (it replaces the previous one)" if old is not None else ""
    return f"System prompt set for the {scope_label(scope)} scope{was}. It applies from now on."


async def reset_prompt(ctx: Context) -> str:
    scope = _scope(ctx)
    _no_text(ctx)
    old = await ctx.prompts.reset(scope, ctx.principal, ctx.message.user_name)
    if old is None:
        return f"There was no {scope_label(scope)} prompt to remove."
    eff = await ctx.prompts.effective(scopes_for(ctx.message))
    return (
        f"Removed the {scope_label(scope)} prompt. Now in effect here: the "
        f"{scope_label(eff.scope)} prompt."
    )


async def prompt_history(ctx: Context) -> str:
    scope = _scope(ctx)
    _no_text(ctx)
    records = await ctx.prompts.history(scope, 10)
    if not records:
        return f"No changes recorded for the {scope_label(scope)} scope."
    out = [f"Last changes to the {scope_label(scope)} prompt (newest first):"]
    for r in records:
        what = "set" if r.action == "set" else "removed"
        out.append(f"• {_when(r.at)} — {r.who_name} ({r.who}) {what}:")
        out.append(_quote(r.new if r.action == "set" else r.old, 200))
    return "\n".join(out)
