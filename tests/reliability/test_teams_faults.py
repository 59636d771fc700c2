"""Fault 4: the Teams connector misbehaves — 403 on a stream, 429, 5xx.

Against a running `threadwise serve` (Teams with an app id) whose activities' `serviceUrl` is the
`FakeConnector` with scheduled failures. The reply still reaches the person whole — the part a
cancelled stream did not show follows as a message, throttled posts wait for `Retry-After`,
server errors are retried — or, when the connector will not take it at all, the failure is
logged and the next message is answered normally.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.support.fakes.fake_openai import Reply
from tests.support.stack import (
    figure,
    log_records,
    teams_key,
    teams_shown,
    teams_thread,
    teams_visible,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

STORY = " ".join(f"word{i}" for i in range(36)) + "."


def squashed(text: str) -> str:
    return "".join(text.split())


async def ask(
    stack, kind: str = "personal_message", *, paced: bool = True, first_token: float = 0.0
) -> dict:
    stack.model.script(Reply(STORY))
    if paced:
        stack.model.configure(tokens_per_second=15)  # ~2.5 s: first words + chunks + final
    if first_token:
        stack.model.configure(first_token_delay=first_token)
    prefix = "" if kind == "personal_message" else "<at>Threadwise</at> "
    act = stack.activity(kind, text=prefix + "tell me a story")
    assert await stack.teams(act) == 200
    return act


async def whole_reply_shown(stack, act: dict, timeout: float = 30.0) -> None:
    conv = act["conversation"]["id"]
    await stack.connector.wait_for(
        lambda _: squashed(teams_shown(stack.connector, conv)) == squashed(STORY), timeout
    )
    history = await stack.stored_when(teams_key(act), 2)
    assert history == [("user", "tell me a story"), ("assistant", STORY)]


@pytest.mark.parametrize(
    "match",
    [
        {"streamType": "streaming", "streamSequence": 2},
        {"streamSequence": 1},
        {"streamType": "informative"},
        {"streamType": "final"},
    ],
    ids=["on-a-chunk", "on-the-first-update", "on-the-informative-update", "on-the-final-message"],
)
async def test_403_on_the_stream_still_shows_the_whole_reply(fresh, match):
    stack = fresh
    stack.connector.fail(403, code="ContentStreamNotAllowed", match=match)
    # A model silent for longer than the stream's open_wait gets an informative update first.
    act = await ask(stack, first_token=2.5 if match == {"streamType": "informative"} else 0.0)
    await whole_reply_shown(stack, act)
    assert stack.connector.rejected and stack.connector.rejected[0][0] == 403
    figure("Teams faults injected")
    figure("fault scenarios survived")


@pytest.mark.parametrize("kind", ["group_chat_mention", "personal_message"])
async def test_429_is_retried_after_retry_after(fresh, kind):
    stack = fresh
    match = {"type": "message"}
    stack.connector.fail(429, retry_after=1, count=2, match=match)
    act = await ask(stack, kind, paced=False)
    await whole_reply_shown(stack, act)
    conv = act["conversation"]["id"]
    [final] = teams_visible(stack.connector, conv)
    refused = [s for s, _ in stack.connector.rejected]
    assert refused == [429, 429]
    assert final.text == STORY
    figure("Teams faults injected", 2)
    figure("fault scenarios survived")


async def test_429_on_stream_chunks_is_retried(fresh):
    stack = fresh
    stack.connector.fail(429, retry_after=1, count=1, match={"streamType": "streaming"})
    act = await ask(stack)
    await whole_reply_shown(stack, act)
    figure("Teams faults injected")
    figure("fault scenarios survived")


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_is_retried(fresh, status):
    stack = fresh
    stack.connector.fail(status, count=1, match={"type": "message"})
    act = await ask(stack, "group_chat_mention", paced=False)
    await whole_reply_shown(stack, act)
    figure("Teams faults injected")
    figure("fault scenarios survived")


async def test_5xx_on_every_stream_chunk_ends_the_stream_and_posts_the_rest(fresh):
    stack = fresh
    stack.connector.fail(503, count=50, match={"streamType": "streaming"})
    act = await ask(stack)
    await whole_reply_shown(stack, act)
    figure("Teams faults injected", 3)
    figure("fault scenarios survived")


async def test_connector_refusing_everything_is_logged_then_recovers(fresh):
    stack = fresh
    stack.connector.fail(503, count=1000)
    act = await ask(stack, "group_chat_mention", paced=False)
    conv = act["conversation"]["id"]
    await stack.connector.wait_for(lambda _: len(stack.connector.rejected) >= 3, 20)
    for _ in range(100):
        records = log_records(stack.svc)
        failed = [r for r in records if "not delivered" in r.get("msg", "")]
        if failed:
            break
        await asyncio.sleep(0.1)
    assert failed, "the undeliverable reply was not logged"
    assert failed[-1]["level"] == "ERROR" and "503" in failed[-1]["msg"]
    assert teams_visible(stack.connector, conv) == []

    stack.connector.failures.clear()  # the connector recovers
    stack.model.script(Reply("Recovered."))
    assert await stack.teams(stack.follow_up(act, "<at>Threadwise</at> back?")) == 200
    assert await teams_thread(stack.connector, conv, 1) == ["Recovered."]
    figure("Teams faults injected")
    figure("fault scenarios survived")
