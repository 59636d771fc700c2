"""The fallback after a refused stream keeps its own pace, however slowly the refusal came."""

from __future__ import annotations

import asyncio
import itertools

from adapters.slack.api import make_client
from adapters.slack.reply import SlackReplies, SlackReplyTarget
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import FakeSlack

ROOT = "1700000100.000100"


async def test_edits_after_a_slow_refusal_are_an_interval_apart_from_the_first_post():
    async with FakeSlack(users={"U1": "Ann"}) as slack:
        slack.fail("chat.startStream", error="not_allowed", delay=0.4)  # a slow "no"
        replies = SlackReplies(
            make_client(slack.token, slack.api_url), Metrics(), update_interval=0.6
        )
        reply = SlackReplyTarget(
            replies, channel="C1", thread_ts=ROOT, message_ts=ROOT, team_id="T1", user_id="U1"
        )
        s = reply.stream()
        text = ""
        for i in range(16):
            await s.append(f"w{i} ")
            text += f"w{i} "
            await asyncio.sleep(0.1)
        await s.finish(text)

        posted = slack.calls_to("chat.postMessage")
        live = [c.t for c in [*posted, *slack.calls_to("chat.update")[:-1]]]
        assert len(posted) == 1 and len(live) >= 2
        assert all(b - a >= 0.55 for a, b in itertools.pairwise(live)), live
        assert slack.thread_texts("C1", ROOT) == [text]
