"""Fault 5: two replicas on one Redis, one conversation's events spread across both, duplicates.

Two `threadwise serve` processes share a Redis prefix, Slack and the model (on one Redis, and
again on a local Redis Cluster). Several Slack
threads and a Teams chat run at once; each message goes to one replica or the other in turn,
and every post is delivered more than once — as `app_mention` to one replica and `message` to
the other, plus a Slack retry (X-Slack-Retry-Num) to either; each Teams activity twice. Every
message must be answered exactly once, in the order it was sent, and each conversation's
history must hold every exchange, in order.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.reliability.conftest import new_stack
from tests.support.stack import (
    channel,
    figure,
    mention,
    message,
    metric,
    slack_key,
    slack_thread,
    teams_key,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

THREADS = 4
TURNS = 6
GAP = 0.15  # seconds between two messages of one conversation (the model takes longer)


@pytest.mark.parametrize("redis", ["redis", "cluster"])
async def test_two_replicas_answer_each_message_once_in_order(
    request, redis, model, slack, connector, redis_url
):
    if redis == "cluster":  # the same on a real local Redis Cluster (3 masters + 3 replicas)
        url = request.getfixturevalue("redis_cluster").url
        stack = new_stack(model, slack, connector, url, REDIS_CLUSTER="true")
    else:
        stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    a, b = await stack.start(), await stack.start()
    replicas = [a, b]
    rng = random.Random(8)
    model.configure(tokens_per_second=60)  # each reply streams for a fraction of a second
    deliveries = 0
    try:

        async def slack_conversation(ch: str, root: str) -> None:
            nonlocal deliveries
            for i in range(TURNS):
                text = f"{ch} turn {i}"
                at = root if i == 0 else ts()
                thread = None if i == 0 else root
                first, second = replicas[i % 2], replicas[(i + 1) % 2]
                if i % 3 == 1:  # a reply in the thread without a mention: one event, retried
                    plain = message(text, ch=ch, at=at, thread=thread, user="U2")
                    sends = [
                        stack.send(plain, svc=first, event_id=f"Ev{ch}{i}a"),
                        stack.send(plain, svc=second, event_id=f"Ev{ch}{i}a", retry_num=1),
                        stack.send(plain, svc=first, event_id=f"Ev{ch}{i}a", retry_num=2),
                    ]
                else:  # a mention: delivered as app_mention and as message, and retried
                    as_mention = mention(f"<@UBOT> {text}", ch=ch, at=at, thread=thread)
                    as_message = message(f"<@UBOT> {text}", ch=ch, at=at, thread=thread)
                    sends = [
                        stack.send(as_mention, svc=first, event_id=f"Ev{ch}{i}a"),
                        stack.send(as_message, svc=second, event_id=f"Ev{ch}{i}b"),
                        stack.send(
                            as_mention,
                            svc=rng.choice(replicas),
                            event_id=f"Ev{ch}{i}a",
                            retry_num=1,
                        ),
                    ]
                # The first delivery arrives first; its twin and the retry race each other.
                assert await sends[0] == 200
                assert await asyncio.gather(*sends[1:]) == [200, 200]
                deliveries += 3
                await asyncio.sleep(GAP)

        async def teams_conversation() -> str:
            nonlocal deliveries
            act = stack.activity("group_chat_mention", text="<at>Threadwise</at> teams turn 0")
            for i in range(TURNS):
                turn = (
                    act if i == 0 else stack.follow_up(act, f"<at>Threadwise</at> teams turn {i}")
                )
                assert await stack.teams(turn, svc=replicas[i % 2]) == 200
                assert await stack.teams(turn, svc=replicas[(i + 1) % 2]) == 200
                deliveries += 2
                await asyncio.sleep(GAP)
            return act

        threads = [(channel(), ts()) for _ in range(THREADS)]
        *_, act = await asyncio.gather(
            *(slack_conversation(ch, root) for ch, root in threads), teams_conversation()
        )

        for ch, root in threads:
            texts = await slack_thread(slack, ch, root, TURNS, timeout=60, quiet=0)
            assert texts == [f"Echo: {ch} turn {i}" for i in range(TURNS)], texts
        conv = act["conversation"]["id"]
        texts = await teams_thread(connector, conv, TURNS, timeout=60)
        assert texts == [f"Echo: teams turn {i}" for i in range(TURNS)], texts
        await slack.settle(0.5)
        for ch, root in threads:
            assert len(slack.thread(ch, root)) == TURNS  # nothing answered twice
            history = await stack.stored_when(slack_key(ch, root), 2 * TURNS)
            expected = []
            for i in range(TURNS):
                expected += [("user", f"{ch} turn {i}"), ("assistant", f"Echo: {ch} turn {i}")]
            assert history == expected
        history = await stack.stored_when(teams_key(act), 2 * TURNS)
        assert [c for _, c in history[::2]] == [f"teams turn {i}" for i in range(TURNS)]

        posts = (THREADS + 1) * TURNS
        assert len(model.chat_requests) == posts, "some message reached the model twice"
        dropped = sum([await metric(r, "threadwise_duplicates_dropped_total") for r in replicas])
        served = [await metric(r, "threadwise_replies_sent_total") for r in replicas]
        assert sum(served) == posts and min(served) > 0, served  # both replicas did work
        print(
            f"\nreplicas: {posts} posts in {deliveries} deliveries; replies per replica "
            f"{served}; duplicates dropped {dropped:.0f}"
        )
        figure("messages sent to two replicas", posts)
        figure("duplicate deliveries sent", deliveries - posts)
        figure("messages lost", 0)
        figure("duplicates answered", 0)
        figure("fault scenarios survived")
    finally:
        model.configure(tokens_per_second=None)
        await stack.close()
