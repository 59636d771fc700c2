"""The running summary's store contract (HISTORY_SUMMARY), for both stores: the hand-over
from history to pending in the commit, the leased fold, and `!reset`."""

from __future__ import annotations

from bot.store import Summary
from tests.contract.test_store_contract import make, msg  # noqa: F401  (the store fixture)


async def commit(store, conv, n, fold=0, tokens=10):
    turn = await store.acquire(conv, f"m{n}-{fold}")
    assert turn is not None
    return await store.commit(
        turn,
        [msg("user", f"q{n}", tokens, "Al"), msg("assistant", f"a{n}", tokens)],
        None,
        fold=fold,
    )


async def test_a_commit_hands_the_messages_a_prompt_left_out_to_the_pending_list(make):  # noqa: F811
    store = make(summaries=True)
    for i in range(3):
        await commit(store, "c", i)
    ctx = await store.load("c", 10_000, [])
    assert (ctx.stored, ctx.pending, ctx.summary) == (6, 0, None)
    assert await commit(store, "c", 3, fold=2) == 2
    ctx = await store.load("c", 10_000, [])
    assert [m.content for m in ctx.history] == ["q1", "a1", "q2", "a2", "q3", "a3"]
    assert (ctx.stored, ctx.pending) == (6, 2)


async def test_without_summaries_a_fold_changes_nothing_and_nothing_is_pending(make):  # noqa: F811
    store = make()
    for i in range(3):
        await commit(store, "c", i)
    assert await commit(store, "c", 3, fold=2) == 0
    ctx = await store.load("c", 10_000, [])
    assert len(ctx.history) == 8
    assert (ctx.stored, ctx.pending, ctx.summary) == (0, 0, None)
    assert await store.begin_fold("c", 1000, 30) is None


async def test_what_trimming_drops_goes_to_the_pending_list_too(make):  # noqa: F811
    store = make(summaries=True, history_budget=40)
    for i in range(4):
        await commit(store, "c", i)
    ctx = await store.load("c", 10_000, [])
    assert [m.content for m in ctx.history] == ["q2", "a2", "q3", "a3"]
    assert ctx.pending == 4
    job = await store.begin_fold("c", 10_000, 30)
    assert [m.content for m in job.messages] == ["q0", "a0", "q1", "a1"]
    assert job.messages[0].name == "Al"


async def test_a_fold_is_leased_and_takes_exactly_what_it_read(make):  # noqa: F811
    store = make(summaries=True, history_budget=40)
    for i in range(4):
        await commit(store, "c", i)
    job = await store.begin_fold("c", 25, 30)  # two 10-token messages fit, not three
    assert [m.content for m in job.messages] == ["q0", "a0"]
    assert await store.begin_fold("c", 25, 30) is None  # another replica: leased
    await commit(store, "c", 4)  # trimming adds more while the fold runs
    assert await store.finish_fold(job, Summary("S1", 7, 2, 1.0))
    ctx = await store.load("c", 10_000, [])
    assert ctx.summary == Summary("S1", 7, 2, 1.0)
    assert ctx.pending == 4  # q1 a1 from before, q2 a2 trimmed during the fold
    nxt = await store.begin_fold("c", 10_000, 30)
    assert [m.content for m in nxt.messages] == ["q1", "a1", "q2", "a2"]
    assert nxt.summary == Summary("S1", 7, 2, 1.0)


async def test_an_abandoned_fold_leaves_everything_pending_for_the_next(make):  # noqa: F811
    store = make(summaries=True, history_budget=40)
    for i in range(3):
        await commit(store, "c", i)
    job = await store.begin_fold("c", 10_000, 30)
    await store.abandon_fold(job)
    again = await store.begin_fold("c", 10_000, 30)
    assert again is not None and again.messages == job.messages
    assert await store.summary("c") is None


async def test_reset_forgets_the_summary_and_discards_a_fold_in_flight(make):  # noqa: F811
    store = make(summaries=True, history_budget=40)
    for i in range(3):
        await commit(store, "c", i)
    job = await store.begin_fold("c", 10_000, 30)
    assert await store.finish_fold(job, Summary("old", 5, 2, 1.0))
    for i in range(3, 5):
        await commit(store, "c", i)
    job = await store.begin_fold("c", 10_000, 30)
    await store.clear("c")
    assert not await store.finish_fold(job, Summary("resurrected", 5, 4, 2.0))
    ctx = await store.load("c", 10_000, [])
    assert (ctx.history, ctx.summary, ctx.pending, ctx.stored) == ([], None, 0, 0)
    assert await store.summary("c") is None


async def test_an_expired_lease_lets_another_replica_fold_and_the_late_one_is_discarded(make):  # noqa: F811
    import asyncio

    store = make(summaries=True, history_budget=40)
    for i in range(3):
        await commit(store, "c", i)
    slow = await store.begin_fold("c", 10_000, 0.05)
    await asyncio.sleep(0.2)
    fast = await store.begin_fold("c", 10_000, 30)
    assert fast is not None
    assert await store.finish_fold(fast, Summary("fast", 5, 2, 1.0))
    assert not await store.finish_fold(slow, Summary("slow", 5, 2, 1.0))
    assert (await store.summary("c")).text == "fast"
