"""`threadwise serve --workers 2`: two processes on one port answer as one service.

Through the CLI, as operators run it: the parent starts two workers that bind the same port
(SO_REUSEPORT); signed Slack events sent to that port reach both; every message is answered
once; SIGTERM to the parent drains both workers (replies in flight finish, none is lost); a
worker that dies is reported with its id and the parent exits non-zero.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest

from tests.reliability.conftest import new_stack
from tests.support.helpers import ServeProcess
from tests.support.stack import channel, figure, log_records, mention, slack_thread, ts

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]


async def _records_when(svc: ServeProcess, check, timeout: float = 60.0) -> list[dict]:
    """The service's log records once `check(records)` holds (or fail after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not check(records := log_records(svc)):
        assert time.monotonic() < deadline, "\n".join(svc.lines[-40:])
        await asyncio.sleep(0.1)
    return records


def _workers_logging(records: list[dict], msg: str) -> set[int]:
    return {r["worker"] for r in records if r.get("msg") == msg and "worker" in r}


async def _two_workers(stack) -> ServeProcess:
    svc = await stack.start("--workers", "2")
    # /healthz answered once one worker listened: wait for the other too.
    await _records_when(svc, lambda rs: _workers_logging(rs, "listening") == {0, 1})
    return svc


def _pids(records: list[dict]) -> list[int]:
    return next(r["pids"] for r in records if r.get("msg") == "workers started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_workers_on_one_port_answer_each_message_once(model, slack, connector, redis_url):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    try:
        svc = await _two_workers(stack)
        threads = [(channel(), ts()) for _ in range(24)]
        # Each send opens its own connection, so the kernel spreads them over both workers.
        statuses = await asyncio.gather(
            *(stack.send(mention(f"<@UBOT> q {ch}", ch=ch, at=root)) for ch, root in threads)
        )
        assert statuses == [200] * len(threads)
        for ch, root in threads:
            assert await slack_thread(slack, ch, root, 1, timeout=60, quiet=0) == [f"Echo: q {ch}"]
        await slack.settle(0.5)
        assert all(len(slack.thread(ch, root)) == 1 for ch, root in threads)
        records = await _records_when(
            svc, lambda rs: sum(r.get("msg") == "answered" for r in rs) >= len(threads)
        )
        assert _workers_logging(records, "answered") == {0, 1}  # both answered some
        figure("messages answered by two workers on one port", len(threads))
    finally:
        await stack.close()


async def test_sigterm_to_the_parent_drains_both_workers(model, slack, connector, redis_url):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    model.configure(delay=1.5)  # every reply is still being written when SIGTERM comes
    try:
        svc = await _two_workers(stack)
        threads = [(channel(), ts()) for _ in range(16)]
        statuses = await asyncio.gather(
            *(stack.send(mention(f"<@UBOT> d {ch}", ch=ch, at=root)) for ch, root in threads)
        )
        assert statuses == [200] * len(threads)
        await stack.model_requests_when(len(threads), timeout=60)
        pids = _pids(log_records(svc))
        assert await svc.stop(signal.SIGTERM, timeout=90) == 0
        for ch, root in threads:  # no reply lost: each finished before its worker exited
            assert [m.text for m in slack.thread(ch, root)] == [f"Echo: d {ch}"]
        records = log_records(svc)
        assert _workers_logging(records, "stopped") == {0, 1}
        assert _workers_logging(records, "answered") == {0, 1}
        assert not [p for p in pids if _alive(p)]
        figure("replies in flight finished by draining workers", len(threads))
    finally:
        model.configure(delay=0.0)
        await stack.close()


async def test_a_worker_that_dies_is_reported_and_the_parent_exits_non_zero(
    model, slack, connector, redis_url
):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    try:
        svc = await _two_workers(stack)
        pids = _pids(log_records(svc))
        os.kill(pids[1], signal.SIGKILL)
        assert svc.proc is not None
        code = await asyncio.wait_for(svc.proc.wait(), 90)
        assert code != 0
        records = log_records(svc)
        crash = [r for r in records if r.get("msg") == "worker exited unexpectedly"]
        assert crash and crash[0]["worker"] == 1 and crash[0]["status"] == "killed by SIGKILL"
        assert _workers_logging(records, "stopped") == {0}  # the other one drained
        assert not [p for p in pids if _alive(p)]
    finally:
        await stack.close()
