"""`!usage` reports the tokens the model reported, and counting them costs no Redis round trip."""

from __future__ import annotations

import dataclasses
import re

import pytest
import redis.asyncio.connection as redis_connection

from bot.prompts import GLOBAL
from bot.store import Usage
from tests.support.commands_harness import (
    PLACES,
    SLACK,
    TEAMS,
    fake,
    make_service,
    msg,
    say,
    service,
    store_kind,
)
from tests.support.fakes.fake_openai import Reply, count_prompt_tokens, count_tokens

__all__ = ["fake", "make_service", "service", "store_kind"]  # the fixtures


USAGE_LINE = re.compile(
    r"• this (channel|workspace): today ([\d,]+) prompt \+ ([\d,]+) completion tokens in "
    r"([\d,]+) repl(?:y|ies)(?: \([\d, ]*estimated\))?; last 30 days ([\d,]+) \+ ([\d,]+) "
    r"in ([\d,]+) repl(?:y|ies)"
)


def usage_figures(answer: str) -> dict[str, tuple[int, ...]]:
    """`!usage` → {"channel": (today p, c, replies, 30d p, c, replies), "workspace": (...)}."""
    found = {
        m[1]: tuple(int(x.replace(",", "")) for x in m.groups()[1:])
        for m in USAGE_LINE.finditer(answer)
    }
    assert set(found) == {"channel", "workspace"}, answer
    return found


# ----------------------------------------------------------------------------------- !usage


@pytest.mark.parametrize("where", list(PLACES))
async def test_admin_usage_shows_today_and_30_days_for_channel_and_workspace(service, fake, where):
    place = PLACES[where]
    fake.script(
        Reply(usage={"prompt_tokens": 1200, "completion_tokens": 34}),
        Reply(usage={"prompt_tokens": 800, "completion_tokens": 66}),
    )
    await say(service, msg(place, "one"))
    await say(service, msg(place, "two"))
    figures = usage_figures((await say(service, msg(place, "!usage"))).text)
    assert figures == {
        "channel": (2000, 100, 2, 2000, 100, 2),
        "workspace": (2000, 100, 2, 2000, 100, 2),
    }


async def test_usage_figures_equal_the_usage_the_model_reported(service, fake):
    """Per channel (both of its threads) and per workspace; other channels stay out of a line."""
    other_thread = dataclasses.replace(SLACK, thread="1700000000.000200")
    c2 = dataclasses.replace(SLACK, channel="C2")
    other_workspace = dataclasses.replace(SLACK, workspace="T2")
    turns = [
        (SLACK, "hello"),
        (SLACK, "tell me more about tokens"),
        (other_thread, "a different thread, same channel"),
        (c2, "another channel"),
        (c2, "and again in the other channel"),
        (other_workspace, "another workspace altogether"),
        (TEAMS, "teams counts elsewhere"),
    ]
    channel = [0, 0, 0]
    workspace = [0, 0, 0]
    for place, text in turns:
        reply = await say(service, msg(place, text, admin=False))
        reported = (
            count_prompt_tokens(fake.chat_requests[-1].messages or []),
            count_tokens(reply.streamed[-1]),  # what the fake counted as completion tokens
            1,
        )
        if place.channel_scope == SLACK.channel_scope:
            channel = [a + b for a, b in zip(channel, reported, strict=True)]
        if place.workspace_scope == SLACK.workspace_scope:
            workspace = [a + b for a, b in zip(workspace, reported, strict=True)]

    figures = usage_figures((await say(service, msg(SLACK, "!usage"))).text)
    assert figures["channel"] == (*channel, *channel)
    assert figures["workspace"] == (*workspace, *workspace)
    assert channel[2] == 3 and workspace[2] == 5


async def test_usage_of_a_teams_channel_adds_up_all_its_reply_chains(service, fake):
    other_chain = dataclasses.replace(
        TEAMS, channel="19:general@thread.tacv2;messageid=1700000000999"
    )
    fake.script(
        Reply(usage={"prompt_tokens": 10, "completion_tokens": 1}),
        Reply(usage={"prompt_tokens": 20, "completion_tokens": 2}),
    )
    await say(service, msg(TEAMS, "in the first chain"))
    await say(service, msg(other_chain, "in the second chain"))
    figures = usage_figures((await say(service, msg(TEAMS, "!usage"))).text)
    assert figures["channel"] == (30, 3, 2, 30, 3, 2)


# ------------------------------------------------------------------------ Redis round trips


@pytest.mark.parametrize("store_kind", ["redis"])
async def test_prompt_resolution_and_usage_counting_add_no_redis_round_trip(service, monkeypatch):
    """Prompts ride in `load`'s pipeline with the history; usage in `commit`'s with the append."""
    sends: list[object] = []
    original = redis_connection.AbstractConnection.send_packed_command

    async def counting(self, command, check_health=True):
        sends.append(command)
        return await original(self, command, check_health)

    monkeypatch.setattr(redis_connection.AbstractConnection, "send_packed_command", counting)
    store = service.store
    conv = msg(SLACK, "").conversation_key
    await store.load(conv, 1000, [])  # warm: connection made, scripts loaded

    async def round_trips(call) -> int:
        sends.clear()
        await call()
        return len(sends)

    without = await round_trips(lambda: store.load(conv, 1000, []))
    with_prompts = await round_trips(
        lambda: store.load(conv, 1000, [SLACK.channel_scope, SLACK.workspace_scope, GLOBAL])
    )
    assert with_prompts == without

    usage = Usage(SLACK.workspace_scope, SLACK.channel_scope, "slack:T1:UUSER", 5, 6)
    counts = []
    for recorded in (None, usage):
        turn = await store.acquire(conv, None)
        assert turn is not None
        counts.append(await round_trips(lambda t=turn, u=recorded: store.commit(t, [], u)))
    assert counts[0] == counts[1]
