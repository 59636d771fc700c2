"""Fault 7: a burst in one thread — 30 messages in one conversation within a second.

A Slack thread starts with a mention; 29 replies follow at once from three people (most of them
without mentioning the bot, as people do in a thread it is part of). A Teams group chat gets 30
messages, each mentioning the bot, in the same second. Every message is answered, in the order
sent, and the history holds all 30 exchanges in order.
"""

from __future__ import annotations

import time

import pytest

from tests.reliability.conftest import new_stack
from tests.support.stack import (
    channel,
    figure,
    mention,
    message,
    slack_key,
    slack_thread,
    teams_key,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

N = 30
PEOPLE = ["U1", "U2", "U3"]


async def test_thirty_messages_in_one_thread_within_a_second(model, slack, connector, redis_url):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    await stack.start()
    model.configure(tokens_per_second=200)
    try:
        ch, root = channel(), ts()
        # A group chat: every message mentions the bot, replies are posted whole (a 1:1 chat
        # streams each reply for at least a second, which would only make this test slow).
        act = stack.activity("group_chat_mention", text="<at>Threadwise</at> teams burst 0")
        started = time.monotonic()
        for i in range(N):
            user = PEOPLE[i % 3]
            if i == 0:
                event = mention("<@UBOT> burst 0", ch=ch, at=root, user=user)
            elif i % 5 == 0:
                event = mention(f"<@UBOT> burst {i}", ch=ch, thread=root, user=user)
            else:
                event = message(f"burst {i}", ch=ch, thread=root, user=user)
            assert await stack.send(event) == 200
            turn = act if i == 0 else stack.follow_up(act, f"<at>Threadwise</at> teams burst {i}")
            assert await stack.teams(turn) == 200
        # How fast the burst went out is the machine's business (a figure, not an assertion):
        # what is proved is that all of it is answered, once each and in order.
        sent_in = time.monotonic() - started

        try:
            texts = await slack_thread(slack, ch, root, N, timeout=120, quiet=0.5)
        except AssertionError:
            texts = slack.thread_texts(ch, root)
        assert texts == [f"Echo: burst {i}" for i in range(N)], " | ".join(texts)
        conv = act["conversation"]["id"]
        texts = await teams_thread(connector, conv, N, timeout=120)
        assert texts == [f"Echo: teams burst {i}" for i in range(N)]

        history = await stack.stored_when(slack_key(ch, root), 2 * N)
        assert [c for _, c in history] == [
            x for i in range(N) for x in (f"burst {i}", f"Echo: burst {i}")
        ]
        history = await stack.stored_when(teams_key(act), 2 * N)
        assert [c for _, c in history] == [
            x for i in range(N) for x in (f"teams burst {i}", f"Echo: teams burst {i}")
        ]
        print(f"\nburst of {2 * N} messages sent in {sent_in:.2f}s, all answered in order")
        figure("burst messages answered in order", 2 * N)
        figure("messages lost", 0)
        figure("fault scenarios survived")
    finally:
        model.configure(tokens_per_second=None)
        await stack.close()
