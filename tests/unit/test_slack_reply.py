"""Replies in Slack through the real slack_sdk client against the fake Web API."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from adapters.slack.api import make_client
from adapters.slack.reply import (
    THINKING_REACTION,
    SlackDeliveryError,
    SlackReplies,
    SlackReplyTarget,
    SlashReplyTarget,
)
from bot.metrics import Metrics
from tests.support.fakes.fake_slack import FakeSlack

ROOT = "1700000100.000100"


@pytest.fixture
async def slack():
    async with FakeSlack(users={"U1": "Ann"}) as fake:
        yield fake


def replies_for(slack: FakeSlack, **knobs) -> SlackReplies:
    return SlackReplies(make_client(slack.token, slack.api_url), Metrics(), **knobs)


def target(replies: SlackReplies, *, channel="C1", thread_ts=ROOT, message_ts=ROOT):
    return SlackReplyTarget(
        replies,
        channel=channel,
        thread_ts=thread_ts,
        message_ts=message_ts,
        team_id="T0FAKE",
        user_id="U1",
    )


async def stream_words(reply, words: list[str], pause: float = 0.0) -> str:
    s = reply.stream()
    text = ""
    for w in words:
        await s.append(w)
        text += w
        if pause:
            await asyncio.sleep(pause)
    await s.finish(text)
    return text


# -- streaming -------------------------------------------------------------------------------


async def test_thread_reply_streams_start_append_stop_in_order(slack):
    # Every small tail sent at once (no minimum update): tests/unit/test_stream_pacing.py
    reply = target(replies_for(slack, stream_interval=0.05, stream_min_update=0))
    await reply.typing()
    text = await stream_words(reply, [f"word{i} " for i in range(12)], pause=0.02)

    methods = slack.methods()
    assert methods[0] == "assistant.threads.setStatus"
    assert methods[1] == "chat.startStream"
    assert methods[-1] == "chat.stopStream"
    assert set(methods[2:-1]) == {"chat.appendStream"}
    assert "chat.update" not in methods and "chat.postMessage" not in methods
    start = slack.calls_to("chat.startStream")[0].params
    assert start["thread_ts"] == ROOT
    assert (start["recipient_team_id"], start["recipient_user_id"]) == ("T0FAKE", "U1")
    [msg] = slack.thread("C1", ROOT)
    assert msg.text == text and not msg.streaming
    assert slack.statuses == [
        {"channel_id": "C1", "thread_ts": ROOT, "status": "is thinking…", "loading_messages": None}
    ]


async def test_stream_calls_are_paced_not_one_per_token(slack):
    reply = target(replies_for(slack, stream_interval=0.2))
    started = time.monotonic()
    text = await stream_words(reply, ["tok "] * 100, pause=0.005)
    elapsed = time.monotonic() - started
    starts = [c.t for c in slack.calls_to("chat.startStream", "chat.appendStream")]
    # A hundred tokens over ~0.5 s or more: a handful of calls, not one per token. (Counted,
    # not timed: the gap between two calls as the fake sees them depends on the machine.)
    assert len(starts) <= elapsed / 0.2 + 1
    assert len(starts) < 20
    assert slack.thread_texts("C1", ROOT) == [text]


async def test_final_note_after_the_streamed_text_goes_out_with_stop_stream(slack):
    reply = target(replies_for(slack))
    s = reply.stream()
    await s.append("The answer is 42.")
    await s.finish("The answer is 42.\n\n_(The reply was cut off.)_")
    assert slack.methods() == ["chat.startStream", "chat.stopStream"]
    assert slack.thread_texts("C1", ROOT) == ["The answer is 42.\n\n_(The reply was cut off.)_"]


async def test_final_text_that_differs_from_the_stream_is_edited_in(slack):
    reply = target(replies_for(slack))
    s = reply.stream()
    await s.append("draft text")
    await s.finish("entirely different text")
    assert slack.methods() == ["chat.startStream", "chat.stopStream", "chat.update"]
    assert slack.thread_texts("C1", ROOT) == ["entirely different text"]


# -- fallback: post + update -----------------------------------------------------------------


@pytest.mark.parametrize("refusal", ["not_allowed", "feature_not_enabled", "invalid_arguments"])
async def test_refused_stream_falls_back_to_post_then_update_at_most_once_a_second(slack, refusal):
    slack.fail("chat.startStream", error=refusal)
    reply = target(replies_for(slack))
    words = [f"w{i} " for i in range(22)]
    text = await stream_words(reply, words, pause=0.1)  # ~2.2 s of model output

    methods = slack.methods()
    assert methods[0] == "chat.startStream"
    assert methods[1] == "chat.postMessage"
    assert set(methods[2:]) == {"chat.update"}
    updates = slack.calls_to("chat.update")
    live = [c.t for c in [slack.calls_to("chat.postMessage")[0], *updates[:-1]]]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(live)), live
    assert updates[-1].params["markdown_text"] == text  # the final update
    assert slack.thread_texts("C1", ROOT) == [text]


async def test_refusal_is_remembered_for_the_channel(slack):
    slack.fail("chat.startStream", error="not_allowed")
    replies = replies_for(slack)
    await stream_words(target(replies), ["first"])
    slack.reset()
    await stream_words(target(replies, thread_ts="1700000200.000200"), ["second"])
    assert slack.methods() == ["chat.postMessage"]
    await stream_words(target(replies, channel="C2"), ["elsewhere"])
    assert "chat.startStream" in slack.methods()


async def test_append_refused_midway_keeps_one_message_with_the_full_text(slack):
    slack.fail("chat.appendStream", error="message_not_in_streaming_state")
    reply = target(replies_for(slack, stream_interval=0.0, stream_min_update=0))
    text = await stream_words(reply, ["one ", "two ", "three ", "four"])
    assert slack.methods()[:2] == ["chat.startStream", "chat.appendStream"]
    assert "chat.update" in slack.methods()
    assert slack.thread_texts("C1", ROOT) == [text]


async def test_top_level_dm_reply_is_posted_at_top_level_and_updated(slack):
    reply = target(replies_for(slack, update_interval=0.05), channel="D1", thread_ts=None)
    text = await stream_words(reply, ["hello ", "there ", "friend"], pause=0.06)
    assert "chat.startStream" not in slack.methods()
    assert slack.methods()[0] == "chat.postMessage"
    assert "thread_ts" not in slack.calls_to("chat.postMessage")[0].params
    assert slack.thread_texts("D1", None) == [text]


# -- long replies ----------------------------------------------------------------------------


def long_reply(paragraphs: int = 30) -> str:
    parts = []
    for i in range(paragraphs):
        if i % 7 == 3:
            parts.append("```python\n" + "\n".join(f"x{i}_{j} = {j}" for j in range(12)) + "\n```")
        else:
            parts.append(" ".join(f"para{i}word{j}" for j in range(20)))
    return "\n\n".join(parts)


@pytest.mark.parametrize("streaming", [True, False])
async def test_long_reply_is_split_on_paragraph_and_code_block_boundaries(slack, streaming):
    if not streaming:
        slack.fail("chat.startStream", error="not_allowed")
    reply = target(replies_for(slack, message_limit=1000, stream_interval=0.0, update_interval=0))
    text = long_reply()
    chunks = [text[i : i + 97] for i in range(0, len(text), 97)]  # deltas cut anywhere
    await stream_words(reply, chunks)

    pieces = slack.thread_texts("C1", ROOT)
    assert len(pieces) > 5
    assert all(len(p) <= 1000 for p in pieces)
    assert "\n\n".join(pieces) == text  # cut exactly at paragraph boundaries
    for p in pieces:
        assert p.count("```") % 2 == 0
    assert not any(m.streaming for m in slack.thread("C1", ROOT))


async def test_long_reply_with_real_limits_fits_slack(slack):
    reply = target(replies_for(slack))
    text = long_reply(400)  # ~200 KB
    await reply.send(text)
    pieces = slack.thread_texts("C1", ROOT)
    assert all(len(p) <= 12_000 for p in pieces)
    assert "\n\n".join(pieces) == text


async def test_msg_too_long_resplits_smaller(slack):
    slack.markdown_limit = 4000  # a workspace where Slack refuses long messages
    reply = target(replies_for(slack))
    text = long_reply(40)
    assert len(text) < 11_000
    await reply.send(text)
    assert slack.calls_to("chat.postMessage")[0].error == "msg_too_long"
    pieces = slack.thread_texts("C1", ROOT)
    assert len(pieces) >= 3 and all(len(p) <= 3500 for p in pieces)
    assert "\n\n".join(pieces) == text


# -- rate limits and failures ----------------------------------------------------------------


async def test_rate_limited_post_is_retried_after_retry_after(slack):
    slack.fail("chat.postMessage", status=429, retry_after=1)
    reply = target(replies_for(slack))
    await reply.send("hello")
    first, second = slack.calls_to("chat.postMessage")
    assert first.status == 429 and second.ok
    assert second.t - first.t >= 1.0
    assert slack.thread_texts("C1", ROOT) == ["hello"]


async def test_server_error_is_retried(slack):
    slack.fail("chat.postMessage", status=503)
    await target(replies_for(slack)).send("hello")
    assert slack.thread_texts("C1", ROOT) == ["hello"]


async def test_send_raises_only_when_nothing_could_be_posted(slack):
    slack.fail("chat.postMessage", error="channel_not_found", times=None)
    replies = replies_for(slack)
    with pytest.raises(SlackDeliveryError):
        await target(replies).send("hello")
    assert replies.metrics.errors.labels("slack_api")._value.get() >= 1


async def test_stream_finish_raises_only_when_nothing_could_be_posted(slack):
    slack.fail("chat.startStream", error="not_allowed")
    slack.fail("chat.postMessage", error="is_archived", times=None)
    s = target(replies_for(slack)).stream()
    await s.append("hello")  # best effort: never raises
    with pytest.raises(SlackDeliveryError):
        await s.finish("hello")


async def test_update_that_fails_is_replaced_by_a_new_post(slack):
    slack.fail("chat.startStream", error="not_allowed")
    slack.fail("chat.update", error="cant_update_message", times=None)
    reply = target(replies_for(slack, update_interval=0.0))
    text = await stream_words(reply, ["part one ", "part two"])
    assert slack.thread_texts("C1", ROOT) == [text]


# -- progress: status or reaction ------------------------------------------------------------


async def test_status_refused_falls_back_to_a_reaction_removed_when_done(slack):
    slack.fail("assistant.threads.setStatus", error="missing_scope")
    reply = target(replies_for(slack))
    await reply.typing()
    assert ("C1", ROOT, THINKING_REACTION) in slack.reactions
    await reply.send("done")
    assert slack.reactions == set()
    assert slack.methods() == [
        "assistant.threads.setStatus",
        "reactions.add",
        "chat.postMessage",
        "reactions.remove",
    ]


async def test_top_level_dm_shows_a_reaction_not_a_status(slack):
    reply = target(replies_for(slack), channel="D1", thread_ts=None, message_ts="1700000500.5")
    await reply.typing()
    await reply.typing()  # repeated calls do not repeat the reaction
    assert slack.methods() == ["reactions.add"]
    await stream_words(reply, ["hi"])
    assert slack.reactions == set()


async def test_typing_never_raises(slack):
    slack.fail("assistant.threads.setStatus", status=500, times=None)
    slack.fail("reactions.add", error="missing_scope")
    await target(replies_for(slack)).typing()


# -- an apology after a broken stream ---------------------------------------------------------


async def test_send_after_an_unfinished_stream_closes_the_stream_first(slack):
    reply = target(replies_for(slack))
    s = reply.stream()
    await s.append("partial answ")
    await reply.send("Sorry — something went wrong.")
    assert slack.methods() == ["chat.startStream", "chat.stopStream", "chat.postMessage"]
    assert slack.thread_texts("C1", ROOT) == ["partial answ", "Sorry — something went wrong."]


# -- slash command answers -------------------------------------------------------------------


class Respond:
    """bolt's `respond`, posting to the fake's response_url."""

    def __init__(self, url: str):
        from slack_bolt.context.respond.async_respond import AsyncRespond

        self._respond = AsyncRespond(response_url=url)

    async def __call__(self, **kwargs):
        return await self._respond(**kwargs)


async def test_slash_answer_is_ephemeral_mrkdwn(slack):
    slash = SlashReplyTarget(Respond(slack.response_url("r1")), replies_for(slack))
    await slash.typing()
    await slash.send("**Admins only.** See [docs](https://example.com).")
    assert slack.responses == [
        {
            "rid": "r1",
            "text": "*Admins only.* See <https://example.com|docs>.",
            "response_type": "ephemeral",
        }
    ]


async def test_slash_stream_posts_once_at_the_end(slack):
    slash = SlashReplyTarget(Respond(slack.response_url("r2")), replies_for(slack))
    s = slash.stream()
    await s.append("a")
    await s.append("b")
    assert slack.responses == []
    await s.finish("ab")
    assert [r["text"] for r in slack.responses] == ["ab"]


async def test_slash_answer_longer_than_five_responses_is_cut_with_a_note(slack):
    slash = SlashReplyTarget(Respond(slack.response_url("r3")), replies_for(slack))
    await slash.send(long_reply(120))
    assert len(slack.responses) == 5
    assert "too long for a slash command" in slack.responses[-1]["text"]


async def test_slash_answer_to_an_expired_response_url_raises(slack):
    slack.fail("response_url", status=404)
    slash = SlashReplyTarget(Respond(slack.response_url("r4")), replies_for(slack))
    with pytest.raises(SlackDeliveryError):
        await slash.send("hi")


async def test_a_message_that_cannot_be_edited_is_reposted_with_those_after_it_in_order(slack):
    reply = target(replies_for(slack, message_limit=200, stream_interval=0.0))
    text = "\n\n".join(" ".join(f"p{i}w{j}" for j in range(12)) for i in range(8))
    slack.fail("chat.update", error="cant_update_message")
    await stream_words(reply, [text[i : i + 50] for i in range(0, len(text), 50)])
    pieces = slack.thread_texts("C1", ROOT)
    assert "\n\n".join(pieces) == text
    assert "chat.delete" in slack.methods()
