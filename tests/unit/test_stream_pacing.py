"""Slack stream pacing (adapters/pacing.py): a short reply is startStream + stopStream.

Through the real slack_sdk client against the fake Web API, with the model's chunks arriving
slower than the stream interval, as they do in a busy process.
"""

from __future__ import annotations

import asyncio

from tests.unit.test_slack_reply import ROOT, replies_for, slack, stream_words, target

__all__ = ["slack"]  # the fixture


async def test_a_short_reply_read_slowly_needs_no_append_stream(slack):
    reply = target(replies_for(slack, stream_interval=0.1))
    words = ["Noted: ", "the rollout ", "continues ", "tomorrow ", "morning, ", "as planned."]
    text = await stream_words(reply, words, pause=0.06)  # 0.36 s: over three intervals
    assert slack.methods() == ["chat.startStream", "chat.stopStream"]
    assert slack.thread_texts("C1", ROOT) == [text]


async def test_a_long_reply_still_updates_as_it_is_written(slack):
    reply = target(replies_for(slack, stream_interval=0.1, stream_min_update=40))
    text = await stream_words(reply, ["twenty characters.. "] * 30, pause=0.02)
    methods = slack.methods()
    assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
    assert methods.count("chat.appendStream") >= 3
    assert slack.thread_texts("C1", ROOT) == [text]


async def test_a_small_tail_is_shown_after_the_hold_when_the_model_pauses(slack):
    reply = target(replies_for(slack, stream_interval=0.05, stream_hold=0.3))
    s = reply.stream()
    await s.append("First words")
    await s.append(", then a few more")
    await slack.wait_for(lambda f: bool(f.calls_to("chat.appendStream")), timeout=10)
    [msg] = slack.thread("C1", ROOT)
    assert msg.text == "First words, then a few more" and msg.streaming
    await s.finish("First words, then a few more.")
    assert slack.methods() == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    assert slack.thread_texts("C1", ROOT) == ["First words, then a few more."]


async def test_the_tail_is_not_sent_before_the_hold(slack):
    reply = target(replies_for(slack, stream_interval=0.05, stream_hold=30.0))
    s = reply.stream()
    await s.append("First words")
    await s.append(", then a few more")
    await asyncio.sleep(0.5)  # ten intervals: an unpaced stream would have appended by now
    assert slack.methods() == ["chat.startStream"]
    await s.finish("")
    assert slack.methods() == ["chat.startStream", "chat.stopStream"]
    assert slack.thread_texts("C1", ROOT) == ["First words, then a few more"]
