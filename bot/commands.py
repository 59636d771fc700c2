"""`!` commands (SPEC.md §5), errbot-style: plain functions, one access check, one parser.

The caller's identity is `IncomingMessage.principal`, which adapters fill from the verified
platform event only; nothing in the message text can change who is asking. Whether that
caller may do something is decided by `may_run` alone — the dispatch, the per-scope checks of
`!prompt` and `!help`'s listing all ask it, so what `!help` shows is exactly what runs.
"""

from __future__ import annotations

import datetime as dt
import difflib
import logging
from collections.abc import Awaitable, Callable, Iterable
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


class Refused(PermissionError):
    """`may_run` said no; carries what was attempted for the answer and the log."""

    def __init__(self, action: str, scope: str | None = None) -> None:
        super().__init__(action)
        self.action = action
        self.scope = scope


# ------------------------------------------------------------------------- who may do what


class AdminList:
    """`BOT_ADMINS`, parsed: admins everywhere and admins of one workspace or tenant.

    `slack:<user id>` / `teams:<AAD object id>` is an admin everywhere; `slack:<team id>:<user
    id>` / `teams:<tenant id>:<AAD object id>` of that workspace only. The entry is split at its
    first colon (platform) and its last (user): a Slack user id never holds a colon and an AAD
    object id is a GUID, so whatever lies between is the workspace — and a Teams *channel* id,
    which does hold colons, never appears in an entry. Everything is compared case-folded:
    Teams GUIDs differ in case between portals; Slack ids are upper-case only, so folding cannot
    make two Slack users one. An entry with an empty part grants nothing (settings refuse it).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        everywhere: set[str] = set()
        scoped: set[tuple[str, str]] = set()
        for raw in entries:
            platform, _, rest = raw.strip().casefold().partition(":")
            workspace, colon, user = rest.rpartition(":")
            if not platform or not user or (colon and not workspace):
                continue
            if colon:
                scoped.add((f"{platform}:{user}", workspace_scope(platform, workspace)))
            else:
                everywhere.add(f"{platform}:{user}")
        self.everywhere = frozenset(everywhere)
        self.scoped = frozenset(scoped)


# Actions anyone may run, and those that need an admin; any other name is refused.
_OPEN = frozenset({"help", "reset", "prompt show"})
_PROMPT_CHANGES = frozenset({"prompt set", "prompt reset", "prompt history"})
_WORKSPACE_ADMIN = frozenset({"usage"})


def may_run(
    admins: AdminList,
    message: IncomingMessage,
    action: str,
    scope: str | None = None,
    *,
    operator: bool = False,
) -> bool:
    """The one access check: may the sender of `message` run `action` (on prompt `scope`)?

    Fail-closed: an unknown action, a prompt change without a scope, a scope outside the
    conversation's workspace, or any error answers False. `operator` is the shell's
    `threadwise prompt` (whoever can run it already holds the service's settings).
    """
    try:
        if action in _OPEN:
            return True
        if action not in _PROMPT_CHANGES and action not in _WORKSPACE_ADMIN:
            return False
        if action in _PROMPT_CHANGES and not scope:
            return False
        if operator:
            return True
        here = workspace_scope(message.platform, message.workspace).casefold()
        if scope is not None and scope != GLOBAL:
            target = scope.casefold()
            if target != here and not target.startswith(here + ":"):
                return False  # chat only ever names scopes of its own conversation
        if message.platform == "console":
            return True  # the terminal's user runs the service (SPEC §7)
        who = message.principal.casefold()
        if who in admins.everywhere:
            return True
        if scope == GLOBAL:
            return False  # --global reaches every workspace: only unscoped entries
        return (who, here) in admins.scoped
    except Exception:
        log.exception("access check failed; refusing")
        return False


@dataclass(frozen=True, slots=True)
class CommandContext:
    message: IncomingMessage
    args: str  # everything after the command word, exactly as typed
    principal: str  # who is asking, from the verified platform identity
    admins: AdminList
    operator: bool  # the operator's shell (`threadwise prompt`)
    store: Store
    prompts: Prompts

    def may(self, action: str, scope: str | None = None) -> bool:
        return may_run(self.admins, self.message, action, scope, operator=self.operator)

    def require(self, action: str, scope: str | None = None) -> None:
        if not self.may(action, scope):
            raise Refused(action, scope)


Handler = Callable[[CommandContext], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: Handler
    needs: str | None  # action checked before the handler runs; None: the handler checks
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
    # From the line of the first non-blank character (dropping one blank line at a time copied
    # the rest each time: quadratic in blank lines).
    first = len(tail) - len(tail.lstrip())
    return tail[tail.rfind("\n", 0, first) + 1 :].rstrip()


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


def _prompt_scopes(m: IncomingMessage) -> dict[str, str]:
    """The scope each `!prompt` option names from this conversation ("" = no option)."""
    return {
        "": channel_scope(m.platform, m.workspace, m.channel),
        "--workspace": workspace_scope(m.platform, m.workspace),
        "--global": GLOBAL,
    }


_PROMPT_HELP = (
    ("set", "TEXT", "set the prompt (default: this channel)"),
    ("reset", "", "remove that prompt"),
    ("history", "", "recent changes"),
)


async def cmd_help(ctx: CommandContext) -> str:
    lines = ["Commands you can use here:"]
    changes_anything = False
    for c in COMMANDS.values():
        if c.name == "prompt":
            lines.append("• `!prompt` / `!prompt show` — the system prompt in effect here")
            for sub, arg, summary in _PROMPT_HELP:
                allowed = [
                    opt
                    for opt, scope in _prompt_scopes(ctx.message).items()
                    if ctx.may(f"prompt {sub}", scope)
                ]
                if not allowed:
                    continue
                changes_anything = True
                opts = [o for o in allowed if o]
                usage = f"!prompt {sub}" + (f" [{'|'.join(opts)}]" if opts else "")
                usage += f" {arg}" if arg else ""
                lines.append(f"• `{usage}` — {summary}")
            continue
        if c.needs is not None and not ctx.may(c.needs):
            continue
        lines.append(f"• `{c.usage}` — {c.summary}")
    if not changes_anything:
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
    # Asked once before parsing, so a non-admin is refused whatever options follow, and once
    # for the scope the options name.
    ctx.require(f"prompt {sub}", _prompt_scopes(ctx.message)[""])
    scope, text = _scope_flag(ctx, rest)
    ctx.require(f"prompt {sub}", scope)
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
        Command("help", cmd_help, "help", "!help", "the commands you can use"),
        Command("reset", cmd_reset, "reset", "!reset", "forget this conversation"),
        Command("prompt", cmd_prompt, None, "!prompt [show]", "the system prompt in effect"),
        Command("usage", cmd_usage, "usage", "!usage", "tokens used today and over 30 days"),
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

    def __init__(self, store: Store, prompts: Prompts, admins: Iterable[str]) -> None:
        self.store = store
        self.prompts = prompts
        self.admins = AdminList(admins)

    async def run(
        self, message: IncomingMessage, *, principal: str | None = None, admin: bool = False
    ) -> CommandResult:
        """Runs one `!` command and says what to answer. Never raises on user input.

        `principal` and `admin=True` are for the operator's shell (`threadwise prompt`) only:
        it may change any scope.
        """
        word, args = _split_word(message.text.lstrip()[1:])
        name = word.lower()
        cmd = COMMANDS.get(name)
        if cmd is None:
            close = difflib.get_close_matches(name, list(COMMANDS), n=1)
            hint = f"Did you mean `!{close[0]}`? " if close else ""
            return CommandResult("unknown", f"Unknown command `!{word}`. {hint}Try `!help`.", False)
        who = principal or message.principal
        ctx = CommandContext(message, args, who, self.admins, admin, self.store, self.prompts)
        try:
            if cmd.needs is not None:
                ctx.require(cmd.needs)
            return CommandResult(name, await cmd.handler(ctx), True)
        except Refused as exc:
            log.warning(
                "admin command refused",
                extra={
                    "user": who,
                    "command": exc.action,
                    "scope": exc.scope,
                    "workspace": workspace_scope(message.platform, message.workspace),
                },
            )
            return CommandResult(name, _refusal(ctx, exc), False)
        except UsageError as exc:
            return CommandResult(name, str(exc), False)


def _refusal(ctx: CommandContext, exc: Refused) -> str:
    if exc.scope == GLOBAL and ctx.may(exc.action, _prompt_scopes(ctx.message)["--workspace"]):
        return (
            f"Sorry, `!{exc.action} --global` would change every workspace, and you are an "
            "admin of this one only. Ask an admin listed in BOT_ADMINS without a workspace."
        )
    return (
        f"Sorry, only admins can use `!{exc.action}`. Admins are listed in the "
        "BOT_ADMINS setting; ask one of them."
    )


__all__ = ["COMMANDS", "DEFAULT", "AdminList", "CommandResult", "Commands", "is_command", "may_run"]
