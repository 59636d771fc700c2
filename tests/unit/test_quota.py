"""`!quota` and the budget commands, and the texts and readings of bot/quota.py."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest

from bot.commands import Commands
from bot.prompts import Prompts
from bot.quota import Quotas, resets_in
from bot.store import MemoryStore, MeterReading, Usage
from bot.tokens import TokenCounter
from tests.unit.test_command_table import msg

ADMINS = ["slack:T1:USCOPED"]


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore(history_budget=1000, history_ttl=3600)
    yield store
    await store.close()


DEFAULTS = Quotas(user_daily=1000)


def commands(store, quotas: Quotas = DEFAULTS) -> Commands:
    prompts = Prompts(store, TokenCounter(), "Default.", 2000)
    return Commands(store, prompts, ADMINS, quotas=quotas)


async def spend(store, user: str, tokens: int) -> None:
    turn = await store.acquire("c", f"m{time.monotonic_ns()}")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    await store.commit(turn, [], Usage("slack:T1", "slack:T1:C1", user, tokens, 0, today))


async def test_quota_shows_what_is_left_of_each_budget_today(store):
    await spend(store, "slack:T1:U1", 250)
    result = await commands(store).run(msg("slack", "T1", "U1", "!quota"))
    assert result.ok
    assert "your budget: 750 of 1,000 tokens left (250 used) — default" in result.text
    assert "this channel's budget: 250 tokens used, no budget" in result.text
    assert "00:00 UTC" in result.text


async def test_an_admin_sets_a_users_budget_and_it_is_audited_and_logged(store, caplog):
    cmds = commands(store)
    caplog.set_level(logging.INFO, "threadwise.commands")
    result = await cmds.run(msg("slack", "T1", "USCOPED", "!quota set user <@U2> 200k"))
    assert result.ok and "200,000 tokens per UTC day" in result.text, result.text
    shown = (await cmds.run(msg("slack", "T1", "U2", "!quota"))).text
    assert "200,000 of 200,000 tokens left" in shown and "set by an admin" in shown
    (record,) = await store.budget_history()
    assert (record.scope, record.who, record.new) == ("u|slack:T1:U2", "slack:USCOPED", "200000")
    assert any(r.message == "budget changed" for r in caplog.records)
    history = (await cmds.run(msg("slack", "T1", "USCOPED", "!quota history"))).text
    assert "u|slack:T1:U2 default → 200,000" in history
    assert (await cmds.run(msg("slack", "T1", "USCOPED", "!quota reset user U2"))).ok
    assert (await store.budgets(["u|slack:T1:U2"])) == {"u|slack:T1:U2": None}


async def test_budget_changes_are_refused_to_non_admins_and_other_workspaces(store):
    cmds = commands(store)
    refused = await cmds.run(msg("slack", "T1", "U1", "!quota set workspace 0"))
    assert not refused.ok and "only admins" in refused.text
    away = await cmds.run(msg("slack", "T2", "USCOPED", "!quota set channel 5"))
    assert not away.ok
    assert await store.budget_history() == []


@pytest.mark.parametrize(
    "text",
    [
        "!quota set",
        "!quota set team 5",
        "!quota set channel",
        "!quota set channel lots",
        "!quota set user @Bob 5",
        "!quota set channel 99999999999999",
        "!quota reset channel 5",
        "!quota now",
    ],
)
async def test_malformed_budget_commands_say_what_is_meant_and_change_nothing(store, text):
    result = await commands(store).run(msg("slack", "T1", "USCOPED", text))
    assert not result.ok and result.text
    assert await store.budget_history() == []


def test_refusals_name_the_limit_and_when_it_resets():
    q = Quotas(rate_per_minute=4)
    noon = 1_780_000_000 - 1_780_000_000 % 86400 + 12 * 3600
    reading = MeterReading({"c|x": 10}, {"c|x": 10}, over="c|x")
    text = q.refusal(reading, now=noon)
    assert "this channel's daily token budget (10 tokens per UTC day)" in text
    assert "00:00 UTC (in 12 h 0 min)" in text
    limited = q.refusal(MeterReading({}, {}, rate_limited=True), now=noon + 15)
    assert "(4 per minute)" in limited and "45 s" in limited
    assert q.refusal(MeterReading({}, {}), now=noon) is None
    assert resets_in(noon + 12 * 3600 - 30) == "1 min"
