"""`!name args` → the table row → the access check → the handler → the answer."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import NamedTuple

from bot.commands.access import Access, AdminList, may_run
from bot.commands.row import (
    Context,
    Refused,
    Row,
    UsageError,
    option_scopes,
    parse_scope,
    split_word,
)
from bot.commands.table import TABLE, UnknownCommand, find
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, Prompts, workspace_scope
from bot.quota import Quotas
from bot.store import Store

log = logging.getLogger("threadwise.commands")


def is_command(text: str) -> bool:
    """Only an ASCII `!` at the very start (after spaces) makes a command; look-alikes do not."""
    return text.lstrip().startswith("!")


class CommandResult(NamedTuple):
    name: str  # for metrics: the first word ("unknown" when no row starts with it)
    text: str  # the answer to post
    ok: bool  # False: refused, wrong usage or unknown — nothing changed


class Commands:
    """Finds the row, checks access in one place, runs the handler, returns the answer."""

    def __init__(
        self,
        store: Store,
        prompts: Prompts,
        admins: Iterable[str],
        table: Sequence[Row] = TABLE,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.quotas = quotas
        self.prompts = prompts
        self.table = table
        self._admins = AdminList(admins)

    def may(self, message: IncomingMessage, need: Access) -> bool:
        """Whether the sender may run rows needing `need` here (the same check, e.g. App Home)."""
        return may_run(self._admins, message, need)

    async def run(
        self, message: IncomingMessage, *, principal: str | None = None, admin: bool = False
    ) -> CommandResult:
        """Runs one `!` command and says what to answer. Never raises on user input.

        `principal` and `admin=True` are for the operator's shell (`threadwise prompt`) only:
        it may change any scope.
        """
        word, args = split_word(message.text.lstrip()[1:])
        name = word.lower()
        try:
            row, rest = find(self.table, word, args)
        except UnknownCommand as exc:
            return CommandResult("unknown", str(exc), False)
        except UsageError as exc:
            return CommandResult(name, str(exc), False)
        who = principal or message.principal
        ctx = Context(
            message, who, self._admins, admin, self.store, self.prompts, self.table, row, rest
        )
        ctx = replace(ctx, quotas=self.quotas)
        try:
            ctx = _checked(ctx)
            return CommandResult(name, await row.run(ctx), True)
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


def _checked(ctx: Context) -> Context:
    """The dispatch's access check: `ctx` with the scope its options name, or `Refused`.

    A scoped row is asked once for this channel before its options are read, so a non-admin is
    refused whatever options follow (never told about a mistyped one), then for the scope the
    options name.
    """
    row = ctx.row
    if not row.scoped:
        if not ctx.may(row):
            raise Refused(row)
        return ctx
    here = option_scopes(ctx.message)[""]
    if not ctx.may(row, here):
        raise Refused(row, here)
    scope, rest = parse_scope(ctx.message, ctx.args)
    if not ctx.may(row, scope):
        raise Refused(row, scope)
    return replace(ctx, scope=scope, args=rest)


def _refusal(ctx: Context, exc: Refused) -> str:
    if exc.scope == GLOBAL and ctx.may(exc.row, option_scopes(ctx.message)["--workspace"]):
        return (
            f"Sorry, `!{exc.action} --global` would change every workspace, and you are an "
            "admin of this one only. Ask an admin listed in BOT_ADMINS without a workspace."
        )
    return (
        f"Sorry, only admins can use `!{exc.action}`. Admins are listed in the "
        "BOT_ADMINS setting; ask one of them."
    )
