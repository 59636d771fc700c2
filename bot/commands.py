"""`!` commands (SPEC.md §5), errbot-style: plain functions, one access check, one parser.

The caller's identity is `IncomingMessage.principal`, which adapters fill from the verified
platform event only; nothing in the message text can change who is asking.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

from bot.messages import IncomingMessage
from bot.prompts import (
    DEFAULT,
    GLOBAL,
    Prompts,
    PromptTooLong,
    channel_scope,
    scope_label,
    scopes_for,
    workspace_scope,
)
from bot.store import Store, UsageTotals

log = logging.getLogger("threadwise.commands")


class UsageError(Exception):
    """Wrong usage; the text says what was meant."""


@dataclass(frozen=True, slots=True)
class CommandContext:
    message: IncomingMessage
    args: str  # everything after the command word, exactly as typed
    principal: str  # who is asking, from the verified platform identity
    is_admin: bool
    store: Store
    prompts: Prompts


Handler = Callable[[CommandContext], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    admin: bool  # needs BOT_ADMINS for every use
    usage: str
    summary: str


def _split_word(text: str) -> tuple[str, str]:
    """First whitespace-separated word and the rest exactly as typed (its separator included)."""
    stripped = text.lstrip()
    i = 0
    while i < len(stripped) and not stripped[i].isspace():
        i += 1
    return stripped[:i], stripped[i:]


def _body(rest: str) -> str:
    """The text after the command words, as typed: Slack and Teams formatting and newlines kept.

    Text on the command's own line loses only the spaces after the command words; text that
    starts on a later line keeps its indentation (a code block, a nested list). Blank lines
    before it and whitespace after it carry no meaning and go.
    """
    head, newline, tail = rest.partition("\n")
    if head.strip():
        return (head.lstrip() + newline + tail).rstrip()
    while True:
        line, newline, after = tail.partition("\n")
        if not newline or line.strip():
            break
        tail = after
    return tail.rstrip()


_OPTIONS = ("--workspace", "--global")
# Smart punctuation (macOS, iOS, Word-backed Teams clients) turns a typed `--` into a dash.
_DASHES = ("\u2014", "\u2013")


def _option(word: str) -> str:
    w = word.lower()
    if w[:1] in _DASHES and w[1:2].isalpha():
        return "--" + w[1:]
    return w


def _scope_flag(ctx: CommandContext, rest: str) -> tuple[str, str]:
    word, after = _split_word(rest)
    m = ctx.message
    opt = _option(word)
    if opt == "--workspace":
        return workspace_scope(m.platform, m.workspace), after
    if opt == "--global":
        return GLOBAL, after
    if opt == "--":  # the end of options: the text may itself start with `--`
        return channel_scope(m.platform, m.workspace, m.channel), after
    if opt.startswith("--"):
        close = difflib.get_close_matches(opt, _OPTIONS, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UsageError(f"Unknown option `{word}`.{hint} Options: `--workspace`, `--global`.")
    return channel_scope(m.platform, m.workspace, m.channel), rest


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _quote(text: str | None, limit: int | None = 300) -> str:
    if text is None:
        return "_(none)_"
    short = text if limit is None or len(text) <= limit else text[:limit] + "…"
    return "\n".join("> " + line for line in short.splitlines() or [""])


# ---------------------------------------------------------------------------- the commands


async def cmd_help(ctx: CommandContext) -> str:
    lines = ["Commands you can use here:"]
    for c in COMMANDS.values():
        if c.name == "prompt":
            lines.append("• `!prompt` / `!prompt show` — the system prompt in effect here")
            if ctx.is_admin:
                lines.append(f"• `{PROMPT_SET}` — set the prompt (default: this channel)")
                lines.append("• `!prompt reset [--workspace|--global]` — remove that prompt")
                lines.append("• `!prompt history [--workspace|--global]` — recent changes")
            continue
        if c.admin and not ctx.is_admin:
            continue
        lines.append(f"• `{c.usage}` — {c.summary}")
    if not ctx.is_admin:
        lines.append("_Admins (BOT_ADMINS) can also change the system prompt and see usage._")
    return "\n".join(lines)


async def cmd_reset(ctx: CommandContext) -> str:
    await ctx.store.clear(ctx.message.conversation_key)
    return "Done: I have forgotten this conversation. The next message starts afresh."


PROMPT_SET = "!prompt set [--workspace|--global] TEXT"
_PROMPT_SUBS = ("show", "set", "reset", "history")


async def cmd_prompt(ctx: CommandContext) -> str:
    word, rest = _split_word(ctx.args)
    sub = word.lower() or "show"
    if sub not in _PROMPT_SUBS:
        close = difflib.get_close_matches(sub, _PROMPT_SUBS, n=1)
        hint = f"Did you mean `!prompt {close[0]}`? " if close else ""
        raise UsageError(
            f"Unknown `!prompt {word}`. {hint}Use `!prompt show`, `{PROMPT_SET}`, "
            "`!prompt reset [--workspace|--global]` or `!prompt history [--workspace|--global]`."
        )
    if sub == "show":
        eff = await ctx.prompts.effective(scopes_for(ctx.message))
        # In full: adapters split long messages, and a clipped prompt would mislead.
        return f"System prompt in effect here (from the {scope_label(eff.scope)} scope):\n" + (
            _quote(eff.text, None)
        )
    if not ctx.is_admin:
        raise PermissionError(f"prompt {sub}")
    scope, text = _scope_flag(ctx, rest)
    who, name = ctx.principal, ctx.message.user_name
    if sub == "set":
        text = _body(text)
        if not text:
            raise UsageError(f"Usage: `{PROMPT_SET}` — the prompt text is missing.")
        try:
            old = await ctx.prompts.set(scope, text, who, name)
        except PromptTooLong as exc:
            raise UsageError(
                f"That prompt is {exc.tokens} tokens; the limit is {exc.limit} "
                "(PROMPT_MAX_TOKENS). Nothing changed."
            ) from None
        was = " (it replaces the previous one)" if old is not None else ""
        return f"System prompt set for the {scope_label(scope)} scope{was}. It applies from now on."
    if text.strip():
        raise UsageError(f"`!prompt {sub}` takes only `--workspace` or `--global`.")
    if sub == "reset":
        old = await ctx.prompts.reset(scope, who, name)
        if old is None:
            return f"There was no {scope_label(scope)} prompt to remove."
        eff = await ctx.prompts.effective(scopes_for(ctx.message))
        return (
            f"Removed the {scope_label(scope)} prompt. Now in effect here: the "
            f"{scope_label(eff.scope)} prompt."
        )
    records = await ctx.prompts.history(scope, 10)
    if not records:
        return f"No changes recorded for the {scope_label(scope)} scope."
    out = [f"Last changes to the {scope_label(scope)} prompt (newest first):"]
    for r in records:
        what = "set" if r.action == "set" else "removed"
        out.append(f"• {_when(r.at)} — {r.who_name} ({r.who}) {what}:")
        out.append(_quote(r.new if r.action == "set" else r.old, 200))
    return "\n".join(out)


async def cmd_usage(ctx: CommandContext) -> str:
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
            f"completion tokens in {day.replies:,} replies; last 30 days "
            f"{month.prompt_tokens:,} + {month.completion_tokens:,} in {month.replies:,} replies"
        )
    return "Token usage (UTC days):\n" + "\n".join(rows)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in (
        Command("help", cmd_help, False, "!help", "the commands you can use"),
        Command("reset", cmd_reset, False, "!reset", "forget this conversation"),
        Command("prompt", cmd_prompt, False, "!prompt [show]", "the system prompt in effect"),
        Command("usage", cmd_usage, True, "!usage", "tokens used today and over 30 days"),
    )
}


def is_command(text: str) -> bool:
    """Only an ASCII `!` at the very start (after spaces) makes a command; look-alikes do not."""
    return text.lstrip().startswith("!")


class CommandResult(NamedTuple):
    name: str  # for metrics ("unknown" when no such command)
    text: str  # the answer to post
    ok: bool  # False: refused, wrong usage or unknown — nothing changed


class Commands:
    """Parses `!name args`, checks access in one place, runs the handler, returns the answer."""

    def __init__(self, store: Store, prompts: Prompts, admins: frozenset[str]) -> None:
        self.store = store
        self.prompts = prompts
        self.admins = admins
        # Teams AAD object ids are GUIDs, case-insensitive (portals and Graph differ in case);
        # Slack ids are upper-case only, so folding cannot make two Slack users one.
        self._admins = frozenset(a.strip().casefold() for a in admins)

    def is_admin(self, message: IncomingMessage) -> bool:
        return message.platform == "console" or message.principal.casefold() in self._admins

    async def run(
        self, message: IncomingMessage, *, principal: str | None = None, admin: bool | None = None
    ) -> CommandResult:
        """Runs one `!` command and says what to answer. Never raises on user input.

        `principal`/`admin` are for the operator's shell (`threadwise prompt`) only.
        """
        word, args = _split_word(message.text.lstrip()[1:])
        name = word.lower()
        cmd = COMMANDS.get(name)
        if cmd is None:
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f"Did you mean `!{close[0]}`? " if close else ""
            return CommandResult("unknown", f"Unknown command `!{word}`. {hint}Try `!help`.", False)
        who = principal or message.principal
        if admin is None:
            admin = self.is_admin(message)
        ctx = CommandContext(message, args, who, admin, self.store, self.prompts)
        try:
            if cmd.admin and not admin:
                raise PermissionError(name)
            return CommandResult(name, await cmd.handler(ctx), True)
        except PermissionError as exc:
            log.warning(
                "admin command refused",
                extra={"user": who, "command": str(exc) or name},
            )
            return CommandResult(
                name,
                f"Sorry, only admins can use `!{exc or name}`. Admins are listed in the "
                "BOT_ADMINS setting; ask one of them.",
                False,
            )
        except UsageError as exc:
            return CommandResult(name, str(exc), False)


__all__ = ["COMMANDS", "DEFAULT", "CommandResult", "Commands", "is_command"]
