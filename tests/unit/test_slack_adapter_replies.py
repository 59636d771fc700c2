"""Replies go to the message's thread (or top-level DM); slash commands are answered ephemerally."""

from __future__ import annotations

import pytest

from bot.messages import IncomingMessage
from tests.support.fakes.fake_slack import (
    app_mention,
    message,
    new_ts,
)
from tests.support.slack_adapter_harness import h, running, slack

__all__ = ["h", "slack"]  # the fixtures


def say(text: str):
    async def script(msg: IncomingMessage, reply) -> None:
        await reply.typing()
        s = reply.stream()
        await s.append(text)
        await s.finish(text)

    return script


# -- replies through the adapter -------------------------------------------------------------


async def test_mention_is_answered_in_its_thread_with_status_then_stream(slack):
    async with running(slack, script=say("Redis is an in-memory store.")) as h:
        ts = new_ts()
        await h.event(app_mention("<@UBOT> what is Redis?", ts=ts))
        await h.handler.wait_for(1)
        assert slack.thread_texts("C1", ts) == ["Redis is an in-memory store."]
        assert slack.methods() == [
            "assistant.threads.setStatus",
            "chat.startStream",
            "chat.stopStream",
        ]


async def test_top_level_dm_is_answered_at_top_level(slack):
    async with running(slack, script=say("Hi Ann!")) as h:
        await h.event(message("hello", channel="D1", channel_type="im"))
        await h.handler.wait_for(1)
        assert slack.thread_texts("D1", None) == ["Hi Ann!"]


# -- slash command ---------------------------------------------------------------------------


async def test_slash_command_is_acked_empty_and_answered_ephemerally(slack):
    async def answer(msg, reply):
        await reply.send(f"You ran `{msg.text}`")

    async with running(slack, script=answer) as h:
        status, out, fields = await h.command("prompt show")
        assert (status, out) == (200, "")
        [msg] = await h.handler.wait_for(1)
        assert msg.text == "!prompt show"
        assert msg.message_id == fields["trigger_id"]
        assert (msg.channel, msg.thread, msg.user_id, msg.user_name) == ("C1", None, "U1", "Ann")
        assert msg.principal == "slack:U1"
        assert slack.responses == [
            {"rid": "cmd", "text": "You ran `!prompt show`", "response_type": "ephemeral"}
        ]
        assert h.count("slash_command") == 1


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ("!usage", "!usage"),
        ("  ! reset ", "!reset"),
        ("", "!help"),
        (
            "prompt set --workspace Use the word payload",
            "!prompt set --workspace Use the word payload",
        ),
        ("prompt set Ask <@U2> & co", "!prompt set Ask @Bob Stone & co"),
    ],
)
async def test_slash_command_arguments_become_a_bang_command(h, args, text):
    status, _, _ = await h.command(args)
    assert status == 200
    [msg] = await h.handler.wait_for(1)
    assert msg.text == text


async def test_slash_command_in_a_dm_is_a_dm(h):
    await h.command("help", channel="D1")
    [msg] = await h.handler.wait_for(1)
    assert msg.is_dm
