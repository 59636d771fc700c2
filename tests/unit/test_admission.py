"""The admission gate before the model: arrival order, bounded width, places never leak."""

from __future__ import annotations

import asyncio

import pytest

from bot.admission import Admission


async def test_turns_are_admitted_in_the_order_they_asked_and_at_most_width_at_once():
    gate = Admission(width=2)
    order: list[int] = []
    inside = 0
    most = 0
    release = asyncio.Event()

    async def turn(i: int) -> None:
        nonlocal inside, most
        await gate.enter()
        order.append(i)
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1
        gate.leave()

    tasks = [asyncio.create_task(turn(i)) for i in range(10)]
    await asyncio.sleep(0.05)
    assert order == [0, 1] and gate.waiting == 8
    release.set()
    await asyncio.gather(*tasks)
    assert order == list(range(10)) and most == 2


async def test_a_turn_that_fails_before_leaving_gives_its_place_back():
    gate = Admission(width=1)

    async def failing() -> None:
        await gate.enter()
        raise RuntimeError("store down")

    with pytest.raises(RuntimeError):
        await asyncio.create_task(failing())
    await asyncio.wait_for(gate.enter(), 5)  # the place is free again
    gate.leave()


async def test_a_cancelled_waiter_does_not_take_a_place():
    gate = Admission(width=1)
    await gate.enter()
    waiter = asyncio.create_task(gate.enter())
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    gate.leave()
    await asyncio.wait_for(asyncio.create_task(gate.enter()), 5)


async def test_entering_twice_from_one_task_holds_one_place():
    gate = Admission(width=1)
    await gate.enter()
    await gate.enter()  # returns at once: this task has the only place
    gate.leave()
    await asyncio.wait_for(asyncio.create_task(gate.enter()), 5)
