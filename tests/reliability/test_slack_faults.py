"""Fault 3: Slack misbehaves — rate limits, server errors, refused streams, slow-event retries.

Against a running `threadwise serve` whose Slack Web API is `FakeSlack` with scripted failures.
Whatever Slack does, the reply reaches the thread exactly once (retrying after `Retry-After`,
falling back from streaming to post + update), or — when Slack will not take it at all — the
failure is logged with the method and error, and the next message is answered normally.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fakes.fake_openai import Reply
from tests.support.stack import (
    channel,
    dm,
    figure,
    log_records,
    mention,
    message,
    slack_key,
    slack_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

STORY = " ".join(f"word{i}" for i in range(30)) + "."


def calls(stack, method: str):
    return stack.slack.calls_to(method)


async def ask_in_thread(stack, text: str = "tell me a story", *, paced: bool = False):
    """A mention in a fresh channel; the model answers STORY (over ~1.5 s when `paced`)."""
    stack.model.script(Reply(STORY))
    if paced:
        stack.model.configure(tokens_per_second=20)
    ch, root = channel(), ts()
    assert await stack.send(mention(f"<@UBOT> {text}", ch=ch, at=root)) == 200
    return ch, root


@pytest.mark.parametrize(
    "method",
    ["chat.startStream", "chat.appendStream", "chat.stopStream", "assistant.threads.setStatus"],
)
async def test_429_on_a_streaming_method_is_retried_after_retry_after(fresh, method):
    stack = fresh
    stack.slack.fail(method, status=429, retry_after=1)
    ch, root = await ask_in_thread(stack, paced=True)
    assert await slack_thread(stack.slack, ch, root, 1, timeout=30) == [STORY]
    tries = calls(stack, method)
    assert tries[0].status == 429 and len(tries) >= 2 and tries[1].ok
    assert tries[1].t - tries[0].t >= 0.95, "Retry-After was not honoured"
    assert "chat.postMessage" not in stack.slack.methods()  # still streamed
    figure("Slack faults injected")
    figure("fault scenarios survived")


async def test_429_on_post_message_in_a_dm_is_retried(fresh):
    stack = fresh
    stack.slack.fail("chat.postMessage", status=429, retry_after=1)
    stack.model.script(Reply("Hello in the DM."))
    d = dm()
    assert await stack.send(message("hi", ch=d, channel_type="im")) == 200
    assert await slack_thread(stack.slack, d, None, 1, timeout=30) == ["Hello in the DM."]
    tries = calls(stack, "chat.postMessage")
    assert [c.status for c in tries] == [429, 200]
    assert tries[1].t - tries[0].t >= 0.95
    figure("Slack faults injected")
    figure("fault scenarios survived")


async def test_429_on_update_in_the_fallback_path_still_ends_with_the_whole_reply(fresh):
    stack = fresh
    stack.slack.fail("chat.startStream", error="not_allowed", times=None)
    stack.slack.fail("chat.update", status=429, retry_after=1, times=2)
    ch, root = await ask_in_thread(stack, paced=True)
    await stack.slack.wait_for(lambda s: s.thread_texts(ch, root) == [STORY], 30)
    await stack.slack.settle(0.5)
    assert stack.slack.thread_texts(ch, root) == [STORY]
    assert [c.status for c in calls(stack, "chat.update")][:1] == [429]
    figure("Slack faults injected", 2)
    figure("fault scenarios survived")


@pytest.mark.parametrize("status", [500, 503])
async def test_persistent_5xx_on_start_stream_falls_back_to_post(fresh, status):
    stack = fresh
    stack.slack.fail("chat.startStream", status=status, times=None)
    ch, root = await ask_in_thread(stack)
    assert await slack_thread(stack.slack, ch, root, 1, timeout=30) == [STORY]
    assert len(calls(stack, "chat.startStream")) == 3  # the call and slack_sdk's two retries
    assert [c.status for c in calls(stack, "chat.postMessage")] == [200]
    # The channel is remembered as refusing streams: the next reply goes straight to a post.
    stack.model.script(Reply("Second."))
    assert await stack.send(message("again", ch=ch, thread=root)) == 200
    assert await slack_thread(stack.slack, ch, root, 2) == [STORY, "Second."]
    assert len(calls(stack, "chat.startStream")) == 3
    figure("Slack faults injected")
    figure("fault scenarios survived")


async def test_5xx_on_append_stream_mid_reply_falls_back_without_losing_text(fresh):
    stack = fresh
    stack.slack.fail("chat.appendStream", status=503, times=None)
    ch, root = await ask_in_thread(stack, paced=True)
    await stack.slack.wait_for(lambda s: s.thread_texts(ch, root) == [STORY], 30)
    await stack.slack.settle(0.5)
    assert stack.slack.thread_texts(ch, root) == [STORY]
    assert not any(m.streaming for m in stack.slack.thread(ch, root))  # no stream left open
    history = await stack.stored_when(slack_key(ch, root), 2)
    assert history == [("user", "tell me a story"), ("assistant", STORY)]
    figure("Slack faults injected")
    figure("fault scenarios survived")


@pytest.mark.parametrize("error", ["not_allowed", "feature_not_enabled", "invalid_arguments"])
async def test_refused_stream_falls_back_to_post_and_update(fresh, error):
    stack = fresh
    stack.slack.fail("chat.startStream", error=error, times=None)
    ch, root = await ask_in_thread(stack)
    assert await slack_thread(stack.slack, ch, root, 1, timeout=30) == [STORY]
    assert "chat.postMessage" in stack.slack.methods()
    figure("Slack faults injected")
    figure("fault scenarios survived")


async def test_slack_refusing_every_post_is_logged_and_the_next_message_answered(fresh):
    stack = fresh
    stack.slack.fail("chat.startStream", error="not_allowed", times=None)
    stack.slack.fail("chat.postMessage", status=503, times=None)
    ch, root = await ask_in_thread(stack)
    for _ in range(200):  # slack_sdk retries each post twice, with backoff: seconds, not minutes
        records = log_records(stack.svc)
        if any(r.get("msg", "").startswith("could not post") for r in records):
            break
        await asyncio.sleep(0.1)
    else:
        seen = [(r["level"], r.get("msg")) for r in records[-12:]]
        raise AssertionError(f"the undeliverable reply was never reported: {seen}")
    assert stack.slack.thread(ch, root) == []
    failures = [r for r in records if r.get("method") == "chat.postMessage"]
    assert failures and all(r["level"] == "WARNING" for r in failures)
    assert {r["error"] for r in failures} == {"http_503"}, "the log must say what Slack said"

    stack.slack.reset()  # Slack recovers
    d = dm()
    stack.model.script(Reply("Recovered."))
    assert await stack.send(message("are you back?", ch=d, channel_type="im")) == 200
    assert await slack_thread(stack.slack, d, None, 1) == ["Recovered."]
    figure("Slack faults injected")
    figure("fault scenarios survived")


async def test_slow_event_retried_by_slack_is_answered_exactly_once(fresh):
    """Slack retries an event it thinks failed (X-Slack-Retry-Num 1–3), here while the model is
    still thinking and again after the answer is out, and delivers the post twice (app_mention
    and message). One answer, one model call."""
    stack = fresh
    stack.model.configure(first_token_delay=2.0)
    stack.model.script(Reply("Only once."), Reply("A DUPLICATE ANSWER"))
    ch, root = channel(), ts()
    as_mention = mention("<@UBOT> slow one", ch=ch, at=root)
    as_message = message("<@UBOT> slow one", ch=ch, at=root)
    sent = await asyncio.gather(
        stack.send(as_mention, event_id="EvA"), stack.send(as_message, event_id="EvB")
    )
    await asyncio.sleep(1.0)
    sent += await asyncio.gather(
        stack.send(as_mention, event_id="EvA", retry_num=1),
        stack.send(as_message, event_id="EvB", retry_num=1),
    )
    assert await slack_thread(stack.slack, ch, root, 1, timeout=20) == ["Only once."]
    sent.append(await stack.send(as_mention, event_id="EvA", retry_num=2))
    sent.append(await stack.send(as_mention, event_id="EvA", retry_num=3))
    await asyncio.sleep(1.0)
    assert sent == [200] * 6
    assert stack.slack.thread_texts(ch, root) == ["Only once."]
    assert len(stack.model.chat_requests) == 1
    figure("duplicate deliveries sent", 5)
    figure("duplicates answered", 0)
    figure("fault scenarios survived")
