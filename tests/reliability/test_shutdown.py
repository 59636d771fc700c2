"""Fault 6: shutdown under load — SIGTERM with 50 replies in flight.

35 Slack threads and 15 Teams chats each have a reply streaming (the model takes a few seconds
per reply) when the service gets SIGTERM. It must stop taking new events (503, so Slack and
Bot Framework retry them elsewhere), finish and post every one of the 50 replies, store them,
and only then exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from tests.reliability.conftest import new_stack
from tests.support.stack import (
    channel,
    figure,
    log_records,
    mention,
    slack_key,
    slack_thread,
    teams_key,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

SLACK, TEAMS = 35, 15
ANSWER = " ".join(f"part{i}" for i in range(24)) + "."


async def test_sigterm_with_fifty_replies_in_flight_posts_every_one(
    model, slack, connector, redis_url
):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    svc = await stack.start()
    model.configure(reply=ANSWER, tokens_per_second=8)  # each reply streams for ~3 s
    try:
        threads = [(channel(), ts()) for _ in range(SLACK)]
        acts = [
            stack.activity(
                "group_chat_mention" if i % 3 else "personal_message",
                text=("<at>Threadwise</at> " if i % 3 else "") + f"question {i}",
            )
            for i in range(TEAMS)
        ]
        sent = await asyncio.gather(
            *(stack.send(mention(f"<@UBOT> q {ch}", ch=ch, at=root)) for ch, root in threads),
            *(stack.teams(act) for act in acts),
        )
        assert sent == [200] * (SLACK + TEAMS)
        deadline = time.monotonic() + 10
        while len(model.chat_requests) < SLACK + TEAMS:  # every reply is being generated
            assert time.monotonic() < deadline, f"only {len(model.chat_requests)} in flight"
            await asyncio.sleep(0.05)
        in_flight_at = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)

        # New events during the drain are refused, so the platform retries them elsewhere.
        await asyncio.sleep(0.3)
        late_ch = channel()
        assert await stack.send(mention("<@UBOT> too late", ch=late_ch)) == 503
        assert await stack.teams(stack.activity("personal_message", text="too late")) == 503

        code = await asyncio.wait_for(svc.proc.wait(), 60)
        drained = time.monotonic() - in_flight_at
        assert code == 0
        for ch, root in threads:
            assert await slack_thread(slack, ch, root, 1, quiet=0, timeout=1) == [ANSWER]
        for act in acts:
            assert await teams_thread(connector, act["conversation"]["id"], 1, 1, 0) == [ANSWER]
        for ch, root in threads:
            assert len(await stack.stored(slack_key(ch, root))) == 2
        for act in acts:
            assert len(await stack.stored(teams_key(act))) == 2
        records = log_records(svc)
        assert not [r for r in records if r.get("msg") == "replies unfinished at shutdown"]
        stopping = [r for r in records if r.get("msg") == "shutting down"]
        assert stopping and stopping[0]["in_flight"] == SLACK + TEAMS
        print(
            f"\nSIGTERM with {SLACK + TEAMS} replies in flight: all posted, exit 0 "
            f"after {drained:.1f}s"
        )
        figure("replies in flight at SIGTERM, all posted", SLACK + TEAMS)
        figure("messages lost", 0)
        figure("fault scenarios survived")
    finally:
        model.configure(reply=None, tokens_per_second=None)
        await stack.close()
