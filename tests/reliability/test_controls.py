"""Issue 18's controls through `threadwise serve` (two replicas, real Redis, the fakes) and the
`threadwise data` CLI: budgets per user, channel and workspace set from the chat, the rate
limit across replicas, redaction in the model request and the stored history, export and
erasure of one user in a three-person thread, and deleting a conversation.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import pytest
import pytest_asyncio

from tests.reliability.conftest import new_stack
from tests.support.helpers import base_env
from tests.support.stack import (
    SLACK_ADMIN,
    TEAM,
    channel,
    mention,
    slack_key,
    slack_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]


async def ask(stack, svc, text, *, ch, user="U1", thread=None, n=1) -> str:
    """Mention the bot and return its newest finished message in that thread."""
    at = ts()
    await stack.send(mention(f"<@UBOT> {text}", ch=ch, user=user, at=at, thread=thread), svc=svc)
    texts = await slack_thread(stack.slack, ch, thread or at, n)
    return texts[-1]


async def data_cli(stack, *args: str) -> tuple[int, str, str]:
    env = base_env(REDIS_URL=stack.redis_url, REDIS_KEY_PREFIX=stack.prefix, LOG_FORMAT="json")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "data",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode(), err.decode()


async def not_near_a_minute_boundary() -> None:
    """Rate counters are per UTC minute: start a burst well inside one."""
    if time.time() % 60 > 40:
        await asyncio.sleep(61 - time.time() % 60)


async def test_budgets_per_user_channel_and_workspace_hold_across_two_replicas(
    model, slack, connector, redis_url
):
    stack = new_stack(model, slack, connector, redis_url)
    stack.reset()
    a, b = await stack.start(), await stack.start()
    try:
        ch1, ch2, ch3 = channel(), channel(), channel()
        said = await ask(stack, a, "!quota set user U1 1", ch=ch1, user=SLACK_ADMIN)
        assert "Daily budget of user U1 set: 1 tokens" in said
        # U1's first answer spends the budget (replica a); the next, on replica b, is refused.
        await ask(stack, a, "first question", ch=ch1)
        requests = len(model.chat_requests)
        at = ts()
        refused = await ask(stack, b, "second question", ch=ch2)
        assert "your daily token budget (1 tokens per UTC day) is used up" in refused
        assert "00:00 UTC" in refused
        assert len(model.chat_requests) == requests  # the model was not called
        assert await stack.stored(slack_key(ch2, at)) == []  # nothing stored
        assert "0 of 1 tokens left" in await ask(stack, a, "!quota", ch=ch1)

        # Another user in the same channel is answered until the channel has a budget.
        await ask(stack, b, "u2 question", ch=ch1, user="U2")
        await ask(stack, a, "!quota set channel 1", ch=ch1, user=SLACK_ADMIN)
        refused = await ask(stack, b, "u2 again", ch=ch1, user="U2")
        assert "this channel's daily token budget" in refused
        assert "budget:" in (usage := await ask(stack, a, "!usage", ch=ch1, user=SLACK_ADMIN))
        assert "set by an admin" in usage

        # A workspace budget refuses every channel of the workspace, on either replica.
        await ask(stack, a, "!quota set workspace 1", ch=ch3, user=SLACK_ADMIN)
        refused = await ask(stack, b, "u2 elsewhere", ch=ch3, user="U2")
        assert "this workspace's daily token budget" in refused
        assert len(model.chat_requests) == requests + 1
        await ask(stack, b, "!quota reset workspace", ch=ch3, user=SLACK_ADMIN)
        history = await ask(stack, a, "!quota history", ch=ch3, user=SLACK_ADMIN)
        assert "w|slack:T0FAKE 1 → default" in history
        # A non-admin cannot change budgets.
        assert "only admins" in await ask(stack, a, "!quota set user U2 0", ch=ch3, user="U2")
    finally:
        await stack.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def controlled(model, slack, connector, redis_url):
    """Two replicas with a rate limit (5 a minute) and redaction on."""
    stack = new_stack(
        model, slack, connector, redis_url, RATE_LIMIT_USER_PER_MINUTE="5", REDACT_PII="true"
    )
    replicas = (await stack.start(), await stack.start())
    yield stack, replicas
    await stack.close()


async def test_the_rate_limit_counts_a_users_messages_across_replicas(controlled):
    stack, (a, b) = controlled
    stack.reset()
    await not_near_a_minute_boundary()
    for n in range(5):  # U3 only here; the other tests' users stay well under the limit
        await ask(stack, (a, b)[n % 2], f"message {n}", ch=channel(), user="U3")
    requests = len(stack.model.chat_requests)
    refused = await ask(stack, a, "one too many", ch=channel(), user="U3")
    assert "faster than this bot allows (5 per minute)" in refused
    assert len(stack.model.chat_requests) == requests
    # Another user is not held back by U3's burst.
    await ask(stack, b, "someone else", ch=channel(), user="U2")
    assert len(stack.model.chat_requests) == requests + 1


async def test_personal_data_is_redacted_for_the_model_and_the_store_consistently(controlled):
    stack, (a, b) = controlled
    stack.reset()
    await not_near_a_minute_boundary()
    ch, root = channel(), ts()
    text = "mail ann@example.com, card 4111 1111 1111 1111, key AKIAIOSFODNN7EXAMPLE"
    await stack.send(mention(f"<@UBOT> {text}", ch=ch, user="U1", at=root), svc=a)
    await slack_thread(stack.slack, ch, root, 1)
    sent = stack.model.chat_requests[-1].messages[-1]["content"]
    assert sent == "mail [EMAIL_1], card [CARD_1], key [SECRET_1]"
    # The same address in a later turn, on the other replica, keeps its placeholder.
    await stack.send(
        mention("<@UBOT> again ANN@example.com and bob@example.com", ch=ch, user="U1", thread=root),
        svc=b,
    )
    await slack_thread(stack.slack, ch, root, 2)
    assert stack.model.chat_requests[-1].messages[-1]["content"] == "again [EMAIL_1] and [EMAIL_2]"
    stored = " ".join(content for _, content in await stack.stored(slack_key(ch, root)))
    assert "ann@example.com" not in stored.lower() and "4111" not in stored
    assert "AKIA" not in stored and "[EMAIL_1]" in stored


async def test_one_user_is_exported_and_erased_from_a_three_person_thread(controlled):
    stack, (a, b) = controlled
    stack.reset()
    await not_near_a_minute_boundary()
    ch, root = channel(), ts()
    conv = slack_key(ch, root)
    await stack.send(mention("<@UBOT> U1 asks first", ch=ch, user="U1", at=root), svc=a)
    await slack_thread(stack.slack, ch, root, 1)
    for n, (user, svc) in enumerate([("U2", b), (SLACK_ADMIN, a), ("U1", b)], start=2):
        event = mention(f"<@UBOT> {user} asks", ch=ch, user=user, thread=root)
        await stack.send(event, svc=svc)
        await slack_thread(stack.slack, ch, root, n)
    assert len(await stack.stored_when(conv, 8)) == 8

    code, out, err = await data_cli(stack, "export", "--user", f"slack:{TEAM}:U1")
    assert code == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    # (U1 also wrote in the redaction test's thread: that conversation is exported too.)
    mine = [x for x in lines if x["type"] == "message" and x["conversation"] == conv]
    assert [x["content"] for x in mine] == ["U1 asks first", "U1 asks"]
    replies = [x for x in lines if x["type"] == "reply" and x["conversation"] == conv]
    assert [x["content"] for x in replies] == ["Echo: U1 asks first", "Echo: U1 asks"]
    assert any(x["type"] == "usage" and x["replies"] >= 2 for x in lines)
    assert "U2 asks" not in out

    code, out, err = await data_cli(stack, "delete", "--user", f"slack:{TEAM}:U1")
    assert code == 0, err
    assert json.loads(out)["messages"] >= 4
    assert "asks" not in err  # logged and audited without message text
    kept = await stack.stored(conv)
    assert [c for r, c in kept if r == "user"] == ["U2 asks", f"{SLACK_ADMIN} asks"]
    assert [r for r, _ in kept] == ["user", "assistant", "user", "assistant"]
    code, out, _ = await data_cli(stack, "export", "--user", f"slack:{TEAM}:U1")
    assert code == 0 and not [x for x in map(json.loads, out.splitlines()) if x["type"] != "usage"]
    # The thread goes on, consistent: the model sees the others' turns, not U1's.
    await stack.send(mention("<@UBOT> U2 again", ch=ch, user="U2", thread=root), svc=a)
    await slack_thread(stack.slack, ch, root, 5)
    seen = [m["content"] for m in stack.model.chat_requests[-1].messages if m["role"] == "user"]
    assert seen == ["U2 asks", f"{SLACK_ADMIN} asks", "U2 again"]

    code, out, err = await data_cli(stack, "delete", "--conversation", conv)
    assert code == 0 and json.loads(out)["found"] is True, err
    assert await stack.stored(conv) == []
    code, out, _ = await data_cli(stack, "delete", "--conversation", conv)
    assert code == 1 and json.loads(out)["found"] is False
    code, _, err = await data_cli(stack, "export", "--user", "U1")
    assert code == 2 and "--user" in err
