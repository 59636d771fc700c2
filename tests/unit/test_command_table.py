"""The command table (issue 13): one row per subcommand, one access check, help from the table.

Expectations are computed from `TABLE` and `may_run`, never from lists written here, so a row
added to the table is covered without touching this file. Handlers are swapped for recorders
where the test is about which row runs, so nothing here depends on what a command does.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
from collections.abc import AsyncIterator

import pytest

from bot.commands import TABLE, Access, AdminList, Commands, Context, Row, may_run
from bot.commands.row import option_scopes
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, Prompts
from bot.store import MemoryStore
from bot.tokens import TokenCounter

ADMINS = ["slack:T1:USCOPED", "slack:UGLOBAL", "teams:tenant-1:aad-scoped", "teams:aad-global"]

_ids = itertools.count()


def msg(platform: str, workspace: str, user: str, text: str) -> IncomingMessage:
    return IncomingMessage(
        platform=platform,  # type: ignore[arg-type]
        workspace=workspace,
        channel="19:c@thread.tacv2" if platform == "teams" else "C1",
        thread=None,
        user_id=user,
        user_name=f"Name of {user}",
        text=text,
        message_id=f"m{next(_ids)}",
    )


# (platform, workspace, user) for each kind of caller.
CALLERS = {
    "slack-non-admin": ("slack", "T1", "UNOBODY"),
    "slack-scoped-admin": ("slack", "T1", "USCOPED"),
    "slack-scoped-admin-away": ("slack", "T2", "USCOPED"),
    "slack-admin": ("slack", "T1", "UGLOBAL"),
    "teams-non-admin": ("teams", "tenant-1", "aad-nobody"),
    "teams-scoped-admin": ("teams", "tenant-1", "aad-scoped"),
    "teams-admin": ("teams", "tenant-1", "aad-global"),
}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore(history_budget=1000, history_ttl=3600)
    yield store
    await store.close()


def commands(store: MemoryStore, table: tuple[Row, ...] = TABLE) -> Commands:
    return Commands(store, Prompts(store, TokenCounter(), "Default.", 2000), ADMINS, table)


def recording(ran: list[tuple[str, str | None, str]]) -> tuple[Row, ...]:
    """TABLE with each handler replaced by one that records (row, scope, args)."""

    async def record(ctx: Context) -> str:
        ran.append((ctx.row.name, ctx.scope, ctx.args))
        return f"ran {ctx.row.name}"

    return tuple(dataclasses.replace(row, run=record) for row in TABLE)


def allowed(message: IncomingMessage, row: Row) -> frozenset[str] | None:
    """What `may_run` allows of `row` here: the options ("" = none), None when nothing."""
    admins = AdminList(ADMINS)
    if row.scoped:
        opts = frozenset(
            opt
            for opt, scope in option_scopes(message).items()
            if may_run(admins, message, row.access, scope)
        )
        return opts or None
    return frozenset({""}) if may_run(admins, message, row.access) else None


_OPTIONS = re.compile(r"\[([^\]]+)\]")


def listed(help_text: str) -> dict[str, frozenset[str]]:
    """The rows `!help` lists, by name, with the options it offers for each."""
    names = sorted((r.name for r in TABLE), key=len, reverse=True)
    found: dict[str, frozenset[str]] = {}
    for line in help_text.splitlines():
        if not line.startswith("• `!"):
            continue
        usage = re.findall(r"`([^`]+)`", line.partition(" — ")[0])[-1].removeprefix("!")
        name = next(n for n in names if usage == n or usage.startswith(n + " "))
        assert name not in found, f"{name} listed twice"
        options = _OPTIONS.search(usage)
        found[name] = frozenset(options[1].split("|") if options else ())
    return found


# ---------------------------------------------------------------------------- the table


def test_the_table_has_one_row_per_subcommand_each_with_access_and_help():
    names = [r.name for r in TABLE]
    assert len(names) == len(set(names))
    assert {
        "help",
        "reset",
        "prompt show",
        "prompt set",
        "prompt reset",
        "prompt history",
        "usage",
    } <= set(names)
    for row in TABLE:
        assert isinstance(row.access, Access), row.name
        assert row.summary and row.name == row.name.lower(), row.name


@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.name)
@pytest.mark.parametrize("typed", [str.lower, str.upper])
async def test_every_row_is_reachable_by_its_name(store, row, typed):
    ran: list[tuple[str, str | None, str]] = []
    text = "!" + typed(row.name) + (" Some text." if row.args else "")
    result = await commands(store, recording(ran)).run(msg("slack", "T1", "UGLOBAL", text))
    assert result.ok, result.text
    assert [name for name, _, _ in ran] == [row.name]
    assert result.name == row.name.split()[0]  # the metric label stays the first word


async def test_the_default_row_runs_when_its_first_word_is_typed_alone(store):
    ran: list[tuple[str, str | None, str]] = []
    for row in (r for r in TABLE if r.default):
        ran.clear()
        await commands(store, recording(ran)).run(msg("slack", "T1", "UNOBODY", "!" + row.name))
        await commands(store, recording(ran)).run(
            msg("slack", "T1", "UNOBODY", "!" + row.name.split()[0])
        )
        assert [name for name, _, _ in ran] == [row.name, row.name]


async def test_a_scoped_row_gets_the_scope_its_option_names_and_the_text_after_it(store):
    ran: list[tuple[str, str | None, str]] = []
    message = msg("slack", "T1", "UGLOBAL", "!prompt set --workspace  Be terse.")
    await commands(store, recording(ran)).run(message)
    assert ran == [("prompt set", option_scopes(message)["--workspace"], "  Be terse.")]


# ------------------------------------------------------------------ help is the same predicate


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_help_lists_exactly_the_rows_may_run_allows(store, caller):
    platform, workspace, user = CALLERS[caller]
    message = msg(platform, workspace, user, "!help")
    result = await commands(store).run(message)
    assert result.ok
    expected = {r.name: opts - {""} for r in TABLE if (opts := allowed(message, r)) is not None}
    assert listed(result.text) == expected


@pytest.mark.parametrize("caller", list(CALLERS))
async def test_the_dispatch_runs_exactly_what_may_run_allows(store, caller):
    platform, workspace, user = CALLERS[caller]
    ran: list[tuple[str, str | None, str]] = []
    table = recording(ran)
    for row in TABLE:
        for opt in ("", "--workspace", "--global") if row.scoped else ("",):
            ran.clear()
            text = " ".join(w for w in ("!" + row.name, opt, "Text." if row.args else "") if w)
            message = msg(platform, workspace, user, text)
            expected = opt in (allowed(message, row) or ())
            result = await commands(store, table).run(message)
            assert result.ok == bool(ran) == expected, text


def test_the_callers_see_different_rows_so_the_help_checks_mean_something():
    def names(caller: str) -> set[str]:
        platform, workspace, user = CALLERS[caller]
        message = msg(platform, workspace, user, "!help")
        return {r.name for r in TABLE if allowed(message, r) is not None}

    assert names("slack-non-admin") < names("slack-scoped-admin") <= names("slack-admin")
    assert names("slack-admin") == {r.name for r in TABLE}
    assert names("slack-scoped-admin-away") == names("slack-non-admin")
    message = msg("slack", "T1", "USCOPED", "!help")
    assert all("--global" not in (allowed(message, r) or ()) for r in TABLE)


# -------------------------------------------------------------------------- fail-closed


@pytest.mark.parametrize("need", ["prompt set", "anyone", "SCOPE_ADMIN", None, 0])
def test_may_run_refuses_anything_but_an_access_even_for_the_operator(need):
    admins = AdminList(ADMINS)
    message = msg("slack", "T1", "UGLOBAL", "")
    assert not may_run(admins, message, need, GLOBAL)  # type: ignore[arg-type]
    assert not may_run(admins, message, need, GLOBAL, operator=True)  # type: ignore[arg-type]


def test_a_scoped_row_without_a_scope_is_refused():
    admins = AdminList(ADMINS)
    assert not may_run(admins, msg("slack", "T1", "UGLOBAL", ""), Access.SCOPE_ADMIN)
    assert not may_run(admins, msg("console", "-", "me", ""), Access.SCOPE_ADMIN, operator=True)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("!prompt delete --global Gone.", "prompt"),
        ("!frobnicate", "unknown"),
        ("!", "unknown"),
        ("!promptset Gone.", "unknown"),
    ],
)
async def test_an_unknown_command_is_refused_and_runs_nothing(store, text, name):
    ran: list[tuple[str, str | None, str]] = []
    for admin in (False, True):  # not even the operator's shell runs a name with no row
        message = msg("slack", "T1", "UGLOBAL", text)
        result = await commands(store, recording(ran)).run(message, admin=admin)
        assert (result.name, result.ok, ran) == (name, False, [])
        assert "Unknown" in result.text


async def test_a_row_with_an_unknown_access_is_neither_run_nor_listed(store):
    ran: list[tuple[str, str | None, str]] = []

    async def record(ctx: Context) -> str:
        ran.append((ctx.row.name, ctx.scope, ctx.args))
        return "ran"

    odd = Row("odd", record, "admin", "a row naming no Access")  # type: ignore[arg-type]
    table = (*TABLE, odd)
    for user, admin in (("UNOBODY", False), ("UGLOBAL", False), ("UGLOBAL", True)):
        result = await commands(store, table).run(msg("slack", "T1", user, "!odd"), admin=admin)
        assert not result.ok and "only admins" in result.text and ran == []
    answer = (await commands(store, table).run(msg("slack", "T1", "UGLOBAL", "!help"))).text
    assert "!odd" not in answer and "`!usage`" in answer


async def test_a_refused_global_change_by_a_scoped_admin_is_logged_and_explained(store, caplog):
    caplog.set_level(logging.INFO, logger="threadwise.commands")
    message = msg("slack", "T1", "USCOPED", "!prompt set --global Everywhere.")
    result = await commands(store).run(message)
    assert not result.ok and "admin of this one only" in result.text
    assert await store.get_prompts([GLOBAL]) == {GLOBAL: None}
    [record] = [r for r in caplog.records if r.name == "threadwise.commands"]
    assert (record.user, record.command, record.scope) == ("slack:USCOPED", "prompt set", GLOBAL)
