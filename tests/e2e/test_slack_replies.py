"""Slash commands are answered ephemerally; refused streams post and update; long replies split."""

from __future__ import annotations

import itertools

import pytest

from tests.support.fakes.fake_openai import Reply
from tests.support.fakes.fake_slack import app_mention, form, new_ts, signed_headers, slash_command
from tests.support.slack_e2e import ADMIN, SECRET, channel, post, send

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


# -- slash command ---------------------------------------------------------------------------


async def test_slash_command_is_answered_ephemerally_to_the_caller(service, model, slack, fresh):
    fields = slash_command("prompt", response_url=slack.response_url("slash1"), user=ADMIN)
    body = form(fields)
    headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
    status, elapsed = await post(service, body, headers)
    assert status == 200 and elapsed < 1.0
    await slack.wait_for(lambda s: len(s.responses) >= 1)
    [response] = slack.responses
    assert response["response_type"] == "ephemeral"
    assert "You are a helpful assistant." in response["text"]
    assert model.chat_requests == []
    assert slack.bot_messages() == []  # nothing posted in the channel for everyone


async def test_slash_command_admin_check_uses_the_slack_user(service, model, slack, fresh):
    fields = slash_command(
        "prompt set Answer like a pirate.", response_url=slack.response_url("s2"), user="U2"
    )
    body = form(fields)
    headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
    assert (await post(service, body, headers))[0] == 200
    await slack.wait_for(lambda s: len(s.responses) >= 1)
    assert "admin" in slack.responses[0]["text"].lower()


# -- streaming fallback and long replies -----------------------------------------------------


async def test_refused_streaming_falls_back_to_post_and_updates(service, model, slack, fresh):
    story = " ".join(f"word{i}" for i in range(40)) + "."
    model.script(Reply(story))
    model.configure(tokens_per_second=15)  # ~3 s of output: a few live updates
    slack.fail("chat.startStream", error="not_allowed", times=None)
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> tell me a story", channel=ch, ts=ts))
    await slack.wait_for(lambda s: s.thread_texts(ch, ts) == [story], 30)
    await slack.settle(0.5)
    methods = [m for m in slack.methods() if m != "assistant.threads.setStatus"]
    assert methods[:2] == ["chat.startStream", "chat.postMessage"]
    assert set(methods[2:]) == {"chat.update"} and len(methods) >= 4
    posts = [c.t for c in slack.calls_to("chat.postMessage", "chat.update")][:-1]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(posts))


async def test_long_reply_is_split_into_several_messages_on_paragraph_boundaries(
    service, model, slack, fresh
):
    paragraphs = []
    for i in range(60):
        if i % 9 == 4:
            code = "\n".join(f"    value_{i}_{j} = compute({j})" for j in range(25))
            paragraphs.append(f"```python\n{code}\n```")
        else:
            paragraphs.append(" ".join(f"p{i}w{j}" for j in range(90)))
    long_text = "\n\n".join(paragraphs)
    assert len(long_text) > 30_000
    model.script(Reply(long_text))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> write a lot", channel=ch, ts=ts))
    # Done when the whole text is there and nothing streams: between two pieces a busy machine
    # may pause longer than any quiet period.
    await slack.wait_for(
        lambda s: (
            not any(m.streaming for m in s.thread(ch, ts))
            and "\n\n".join(s.thread_texts(ch, ts)) == long_text
        ),
        120,
    )
    pieces = slack.thread_texts(ch, ts)
    assert len(pieces) >= 3
    assert all(len(p) <= 12_000 for p in pieces)
    assert "\n\n".join(pieces) == long_text
    assert all(p.count("```") % 2 == 0 for p in pieces)
