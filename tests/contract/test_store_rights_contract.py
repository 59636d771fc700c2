"""The contract of budgets, rate slots, redaction placeholders and data requests, for both
stores (Redis and in-process), and that the answer path's round trips stay what they were."""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from bot.store import (
    AuditRecord,
    MeterRequest,
    RedisStore,
    TurnRecord,
    Usage,
    decode_message,
    encode_message,
)
from bot.trimming import StoredMessage
from tests.contract.test_store_contract import make  # noqa: F401  (the two-store fixture)

DAY = "2026-03-01"
DIMS = ("u|slack:T:U1", "c|slack:T:C", "w|slack:T")


def req(defaults=(0, 0, 0), rate=0, user="slack:T:U1", minute=1000) -> MeterRequest:
    return MeterRequest(DAY, tuple(zip(DIMS, defaults, strict=True)), user, minute, rate)


def said(user: str, n: int, tokens: int = 10) -> list[StoredMessage]:
    return [
        StoredMessage("user", f"q{n} by {user}", tokens, None, user=user),
        StoredMessage("assistant", f"a{n} for {user}", tokens, None, user=user),
    ]


async def commit(store, conv, messages, usage=None, record=None, once=None):
    turn = await store.acquire(conv, once or f"m{time.monotonic_ns()}")
    assert turn is not None
    return await store.commit(turn, messages, usage, record)


async def test_meter_reads_todays_usage_against_default_and_set_budgets(make):  # noqa: F811
    store = make()
    await commit(store, "c", [], Usage("slack:T", "slack:T:C", "slack:T:U1", 70, 30, DAY))
    ctx = await store.load("c", 1000, [], req((0, 500, 0)))
    assert ctx.meter.used == dict.fromkeys(DIMS, 100)
    assert ctx.meter.admitted and ctx.meter.budgets["c|slack:T:C"] == 500
    assert (await store.load("c", 1000, [], req((100, 0, 0)))).meter.over == "u|slack:T:U1"
    # A budget set for the workspace overrides its default (0 = unlimited) until reset.
    record = AuditRecord(time.time(), "w|slack:T", "slack:UA", "Ada", "set", None, "100")
    assert await store.change_budget(record) is None
    assert (await store.load("c", 1000, [], req())).meter.over == "w|slack:T"
    assert (await store.budgets(["w|slack:T", "c|slack:T:C"])) == {
        "w|slack:T": 100,
        "c|slack:T:C": None,
    }
    reset = AuditRecord(time.time(), "w|slack:T", "slack:UA", "Ada", "reset", None, None)
    assert await store.change_budget(reset) == "100"
    assert (await store.load("c", 1000, [], req())).meter.admitted
    history = await store.budget_history()
    assert [(r.action, r.old, r.new) for r in history] == [
        ("reset", "100", None),
        ("set", None, "100"),
    ]


async def test_rate_slots_are_taken_only_when_admitted_and_per_minute(make):  # noqa: F811
    store = make()
    readings = [(await store.load("c", 100, [], req(rate=2))).meter for _ in range(4)]
    assert [r.rate_limited for r in readings] == [False, False, True, True]
    assert not (await store.load("c", 100, [], req(rate=2, minute=1001))).meter.rate_limited
    assert not (await store.load("c", 100, [], req(rate=2, user="slack:T:U2"))).meter.rate_limited
    # Over budget: refused for the budget, and no slot of the minute is used up.
    await commit(store, "c", [], Usage("slack:T", "slack:T:C", "slack:T:U3", 10, 0, DAY))
    over = MeterRequest(DAY, (("u|slack:T:U3", 5),), "slack:T:U3", 1000, 1)
    assert (await store.load("c", 100, [], over)).meter.over == "u|slack:T:U3"
    free = MeterRequest(DAY, (("u|slack:T:U3", 0),), "slack:T:U3", 1000, 1)
    assert (await store.load("c", 100, [], free)).meter.admitted


async def test_placeholders_are_kept_with_the_turn_and_forgotten_on_reset(make):  # noqa: F811
    store = make()
    record = TurnRecord("slack:T:U1", {"h1": "[EMAIL_1]"})
    await commit(store, "c", said("slack:T:U1", 0), record=record)
    assert (await store.load("c", 1000, [], redactions=True)).redactions == {"h1": "[EMAIL_1]"}
    assert (await store.load("c", 1000, [])).redactions == {}
    await store.clear("c")
    assert (await store.load("c", 1000, [], redactions=True)).redactions == {}


def test_messages_stored_before_user_ids_still_load():
    old = "10\tuser\tAl\tq0\twith a tab"
    assert decode_message(old) == StoredMessage("user", "q0\twith a tab", 10, "Al", user=None)
    new = StoredMessage("assistant", "a", 3, None, user="teams:tid:9f\t\x1ex")
    back = decode_message(encode_message(new))
    assert back.user == "teams:tid:9f  x" and back.content == "a" and back.name is None


async def test_a_users_messages_are_erased_from_a_shared_thread_others_stay(make):  # noqa: F811
    store = make()
    for n, user in enumerate(["slack:T:U1", "slack:T:U2", "slack:T:U1", "slack:T:U3"]):
        await commit(store, "thread", said(user, n), record=TurnRecord(user))
    await commit(store, "other", said("slack:T:U2", 9), record=TurnRecord("slack:T:U2"))
    assert await store.user_conversations("slack:T:U1") == ["thread"]
    assert sorted(await store.user_conversations("slack:T:U2")) == ["other", "thread"]
    assert await store.erase_user_messages("thread", "slack:T:U1") == 4
    kept = await store.history("thread")
    assert [m.content for m in kept] == [
        "q1 by slack:T:U2",
        "a1 for slack:T:U2",
        "q3 by slack:T:U3",
        "a3 for slack:T:U3",
    ]
    # The running total follows: the next turn trims and loads by what is really there.
    fitted = (await store.load("thread", 20, [])).history
    assert [m.content for m in fitted] == ["q3 by slack:T:U3", "a3 for slack:T:U3"]
    await commit(store, "thread", said("slack:T:U2", 5), record=TurnRecord("slack:T:U2"))
    assert len(await store.history("thread")) == 6
    await store.forget_user_index("slack:T:U1")
    assert await store.user_conversations("slack:T:U1") == []
    assert await store.erase_user_messages("thread", "slack:T:U9") == 0


async def test_audits_keep_the_change_but_not_the_person(make):  # noqa: F811
    store = make()
    at = time.time()
    await store.change_prompt(
        AuditRecord(at, "slack:T:C", "slack:U1", "Ann", "set", None, "Be brief.")
    )
    await store.change_prompt(
        AuditRecord(at, "slack:T:C", "slack:U2", "Bob", "set", None, "Be kind.")
    )
    await store.change_budget(AuditRecord(at, "u|slack:T:U1", "slack:U2", "Bob", "set", None, "5"))
    assert await store.audited_scopes() == ["slack:T:C"]
    assert await store.anonymise_audits("slack:U1", "u|slack:T:U1") == 2
    prompts = await store.prompt_history("slack:T:C")
    assert [(r.who, r.who_name, r.new) for r in prompts] == [
        ("slack:U2", "Bob", "Be kind."),
        ("erased", "(erased)", "Be brief."),
    ]
    (budget,) = await store.budget_history()
    assert (budget.scope, budget.who, budget.new) == ("u|(erased)", "slack:U2", "5")


async def test_usage_rows_of_one_user_are_erased_and_the_rest_kept(make):  # noqa: F811
    store = make()
    await commit(store, "c", [], Usage("slack:T", "slack:T:C", "slack:T:U1", 5, 1, DAY))
    assert await store.erase_usage("u|slack:T:U1", [DAY, "2026-02-28"]) == 3
    assert (await store.usage([DAY], "u|slack:T:U1"))[DAY].replies == 0
    assert (await store.usage([DAY], "c|slack:T:C"))[DAY].prompt_tokens == 5


async def test_a_deleted_conversation_is_gone_and_data_requests_are_audited(make):  # noqa: F811
    store = make()
    await commit(
        store, "c", said("slack:T:U1", 0), record=TurnRecord("slack:T:U1", {"h": "[IP_1]"})
    )
    assert await store.delete_conversation("c") is True
    assert await store.history("c") == [] and not await store.is_subscribed("c")
    assert (await store.load("c", 100, [], redactions=True)).redactions == {}
    assert await store.delete_conversation("c") is False
    rec = AuditRecord(
        time.time(), "data:sha256:x", "cli:ops", "cli:ops", "delete-user", None, "n=1"
    )
    await store.record_data_request(rec)
    assert (await store.data_requests())[0].action == "delete-user"


async def test_metering_and_placeholders_add_no_round_trip(redis_url, key_prefix, monkeypatch):
    from redis.asyncio.connection import Connection

    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    await commit(store, "c", said("slack:T:U1", 0))  # scripts loaded, connections open
    await store.load("c", 1000, [], req(rate=5), redactions=True)
    sends = 0
    original = Connection.send_packed_command

    async def counting(self, command, check_health=True):
        nonlocal sends
        sends += 1
        return await original(self, command, check_health)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    turn = await store.acquire("c", "m1")
    await store.load("c", 1000, ["slack:T:C", "slack:T", "global"], req(rate=5), redactions=True)
    u = Usage("slack:T", "slack:T:C", "slack:T:U1", 5, 1)
    await store.commit(turn, said("slack:T:U1", 1), u, TurnRecord("slack:T:U1", {"h": "[EMAIL_1]"}))
    monkeypatch.undo()
    await store.close()
    assert sends == 3


async def test_the_user_index_expires_with_the_history(redis_url, key_prefix):
    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    await commit(store, "c", said("slack:T:U1", 0), record=TurnRecord("slack:T:U1", {"h": "x"}))
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        assert 0 < await r.ttl(store.keys.user_index("slack:T:U1")) <= 60
        assert 0 < await r.ttl(store.keys.conversation("c", "r")) <= 60
    finally:
        await r.aclose()
        await store.close()
