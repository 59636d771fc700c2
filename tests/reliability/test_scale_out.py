"""Three replicas behave as one: 100 concurrent conversations, duplicates across replicas.

Three `threadwise serve` processes share one Redis prefix (one of them is itself two workers
on one port, `serve --workers 2`), the fake Slack and the fake model. Each conversation is a
mention and a follow-up in its thread. The mention is delivered three times, each to another
replica: as `app_mention`, as `message`, and as a Slack retry. The follow-up (a thread reply
without a mention) races the mention's answer: it is sent, twice and to two replicas, as soon as
the model has the mention, while its reply is still being written. Every message must be
answered exactly once, the follow-up after the mention, and each history must hold both
exchanges in order.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.conftest import new_stack
from tests.support.fakes.fake_openai import _last_user_text
from tests.support.stack import (
    channel,
    figure,
    mention,
    message,
    metric,
    slack_key,
    slack_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

CONVERSATIONS = 100


async def test_three_replicas_answer_100_conversations_once_each_in_order(
    model, slack, connector, redis_url
):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    model.configure(delay=1.0)  # the follow-up arrives while the mention's reply is written
    try:
        replicas = [await stack.start(), await stack.start(), await stack.start("--workers", "2")]
        seen: set[str] = set()  # texts that reached the model

        async def model_has(text: str, timeout: float = 120.0) -> None:
            deadline = time.monotonic() + timeout
            while text not in seen:
                for r in model.chat_requests:
                    if r.messages:
                        seen.add(_last_user_text(r.messages))
                assert time.monotonic() < deadline, f"the model never got {text!r}"
                await asyncio.sleep(0.1)

        async def conversation(i: int, ch: str, root: str) -> None:
            a, b, c = (replicas[(i + k) % 3] for k in range(3))
            text = f"{ch} first"
            as_mention = mention(f"<@UBOT> {text}", ch=ch, at=root)
            as_message = message(f"<@UBOT> {text}", ch=ch, at=root)
            statuses = await asyncio.gather(
                stack.send(as_mention, svc=a, event_id=f"Ev{ch}a"),
                stack.send(as_message, svc=b, event_id=f"Ev{ch}b"),
                stack.send(as_mention, svc=c, event_id=f"Ev{ch}a", retry_num=1),
            )
            assert statuses == [200, 200, 200]
            await model_has(text)
            follow = message(f"{ch} second", ch=ch, at=ts(), thread=root, user="U2")
            statuses = await asyncio.gather(
                stack.send(follow, svc=c, event_id=f"Ev{ch}f"),
                stack.send(follow, svc=a, event_id=f"Ev{ch}f", retry_num=1),
            )
            assert statuses == [200, 200]

        threads = [(channel(), ts()) for _ in range(CONVERSATIONS)]
        await asyncio.wait_for(
            asyncio.gather(*(conversation(i, ch, root) for i, (ch, root) in enumerate(threads))),
            300,
        )
        for ch, root in threads:
            texts = await slack_thread(slack, ch, root, 2, timeout=120, quiet=0)
            assert texts == [f"Echo: {ch} first", f"Echo: {ch} second"], texts
        await slack.settle(1.0)
        for ch, root in threads:
            assert len(slack.thread(ch, root)) == 2  # nothing answered twice
            history = await stack.stored_when(slack_key(ch, root), 4)
            assert history == [
                ("user", f"{ch} first"),
                ("assistant", f"Echo: {ch} first"),
                ("user", f"{ch} second"),
                ("assistant", f"Echo: {ch} second"),
            ]
        posts = 2 * CONVERSATIONS
        assert len(model.chat_requests) == posts, "some message reached the model twice"
        served = [await metric(r, "threadwise_replies_sent_total") for r in replicas]
        assert min(served) > 0, served  # every replica did work
        figure("conversations across three replicas", CONVERSATIONS)
        figure("duplicate deliveries sent", 3 * CONVERSATIONS)
        figure("messages lost", 0)
        figure("duplicates answered", 0)
    finally:
        model.configure(delay=0.0)
        await stack.close()
