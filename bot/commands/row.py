"""What every command shares: the table row, the context a handler gets, its errors, parsing.

The caller's identity is `IncomingMessage.principal`, which adapters fill from the verified
platform event only; nothing in the message text can change who is asking.
"""

from __future__ import annotations

import difflib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.commands.access import Access, AdminList, may_run
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, Prompts, channel_scope, workspace_scope
from bot.quota import Quotas
from bot.store import Store


class UsageError(Exception):
    """Wrong usage; the text says what was meant."""


class Refused(PermissionError):
    """`may_run` said no; carries what was attempted for the answer and the log."""

    def __init__(self, row: Row, scope: str | None = None) -> None:
        super().__init__(row.name)
        self.row = row
        self.action = row.name
        self.scope = scope


SCOPE_OPTIONS = ("--workspace", "--global")


@dataclass(frozen=True, slots=True)
class Row:
    """One subcommand: what is typed after `!`, what runs, who may, and its help text."""

    name: str  # the words after `!`, lower case: "help", "prompt set"
    run: Handler
    access: Access
    summary: str  # the help text after the usage
    args: str = ""  # what the usage names after the options: "TEXT"
    default: bool = False  # runs when its first word is typed alone (`!prompt`)

    @property
    def scoped(self) -> bool:
        """Takes `--workspace` / `--global`, and access is decided for the scope they name."""
        return self.access is Access.SCOPE_ADMIN

    def usage(self, options: Sequence[str] | None = None) -> str:
        """`!name [options] ARGS`; `options` None: every option the row takes."""
        opts = (SCOPE_OPTIONS if self.scoped else ()) if options is None else options
        text = f"!{self.name}" + (f" [{'|'.join(opts)}]" if opts else "")
        return text + (f" {self.args}" if self.args else "")


@dataclass(frozen=True, slots=True)
class Context:
    """What a handler gets; access has been checked for `row` on `scope` before it runs."""

    message: IncomingMessage
    principal: str  # who is asking, from the verified platform identity
    admins: AdminList
    operator: bool  # the operator's shell (`threadwise prompt`)
    store: Store
    prompts: Prompts
    table: Sequence[Row]  # every row, for `!help`
    row: Row  # the row running
    args: str  # after the command words and options, exactly as typed
    scope: str | None = None  # the prompt scope the options name (scoped rows only)
    quotas: Quotas | None = None  # the budget defaults (`!quota`, `!usage`)

    def may(self, row: Row, scope: str | None = None) -> bool:
        return may_run(self.admins, self.message, row.access, scope, operator=self.operator)


Handler = Callable[[Context], Awaitable[str]]


def split_word(text: str) -> tuple[str, str]:
    """First whitespace-separated word and the rest exactly as typed (its separator included)."""
    stripped = text.lstrip()
    i = 0
    while i < len(stripped) and not stripped[i].isspace():
        i += 1
    return stripped[:i], stripped[i:]


def option_scopes(m: IncomingMessage) -> dict[str, str]:
    """The scope each scope option names from this conversation ("" = no option)."""
    return {
        "": channel_scope(m.platform, m.workspace, m.channel),
        "--workspace": workspace_scope(m.platform, m.workspace),
        "--global": GLOBAL,
    }


# Smart punctuation (macOS, iOS, Word-backed Teams clients) turns a typed `--` into a dash.
_DASHES = ("\u2014", "\u2013")


def _option(word: str) -> str:
    w = word.lower()
    if w[:1] in _DASHES and w[1:2].isalpha():
        return "--" + w[1:]
    return w


def parse_scope(m: IncomingMessage, rest: str) -> tuple[str, str]:
    """The scope the leading option names (this channel without one) and the text after it."""
    word, after = split_word(rest)
    opt = _option(word)
    scopes = option_scopes(m)
    if opt in SCOPE_OPTIONS:
        return scopes[opt], after
    if opt == "--":  # the end of options: the text may itself start with `--`
        return scopes[""], after
    if opt.startswith("--"):
        close = difflib.get_close_matches(opt, SCOPE_OPTIONS, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        raise UsageError(f"Unknown option `{word}`.{hint} Options: `--workspace`, `--global`.")
    return scopes[""], rest
