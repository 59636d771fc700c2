"""`!help` lists what the asker may run, `!reset` forgets one conversation, typos change nothing."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.commands_harness import (
    PLACES,
    SLACK,
    WHO,
    WITH_NON_ADMINS,
    fake,
    make_service,
    msg,
    say,
    seed_all_scopes,
    service,
    snapshot,
    store_kind,
)

__all__ = ["fake", "make_service", "service", "store_kind"]  # the fixtures


# ------------------------------------------------------------------------------------ !help

ADMIN_ONLY = ["!prompt set", "!prompt reset", "!prompt history", "!usage"]


@pytest.mark.parametrize("where", list(PLACES))
async def test_help_from_an_admin_lists_the_admin_commands(service, fake, where):
    answer = (await say(service, msg(PLACES[where], "!help"))).text
    for command in ["!help", "!reset", "!prompt", "!prompt show", *ADMIN_ONLY]:
        assert f"`{command}" in answer
    assert fake.chat_requests == []


@pytest.mark.parametrize("where", WITH_NON_ADMINS)
async def test_help_from_a_non_admin_lists_only_what_they_may_run(service, fake, where):
    answer = (await say(service, msg(PLACES[where], "!help", admin=False))).text
    for command in ["!help", "!reset", "!prompt", "!prompt show"]:
        assert f"`{command}" in answer
    for command in ADMIN_ONLY:
        assert command not in answer
    assert fake.chat_requests == []


# ----------------------------------------------------------------------------------- !reset


@pytest.mark.parametrize(("where", "admin"), WHO)
async def test_reset_forgets_the_conversation_so_the_next_request_has_no_history(
    service, fake, where, admin
):
    place = PLACES[where]
    await say(service, msg(place, "first question", admin=admin))
    await say(service, msg(place, "second question", admin=admin))
    key = msg(place, "").conversation_key
    assert len(await service.store.history(key)) == 4

    answer = (await say(service, msg(place, "!reset", admin=admin))).text
    assert "forgotten this conversation" in answer
    assert await service.store.history(key) == []

    await say(service, msg(place, "fresh start", admin=admin))
    sent = fake.last_messages()
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[-1]["content"] == "fresh start"


async def test_reset_forgets_only_its_own_thread(service, fake):
    other = dataclasses.replace(SLACK, thread="1700000000.000999")
    await say(service, msg(SLACK, "in this thread"))
    await say(service, msg(other, "in the other thread"))
    await say(service, msg(SLACK, "!reset"))
    assert await service.store.history(msg(SLACK, "").conversation_key) == []
    assert len(await service.store.history(msg(other, "").conversation_key)) == 2


# ----------------------------------------------------------------------- wrong usage


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("!prompt sett Be terse.", "Did you mean `!prompt set`?"),
        ("!hlep", "Did you mean `!help`?"),
        ("!usag", "Did you mean `!usage`?"),
        ("!prompt set --wrkspace Be terse.", "Did you mean `--workspace`?"),
        ("!prompt reset --globl", "Did you mean `--global`?"),
        ("!prompt set", "Usage: `!prompt set [--workspace|--global] TEXT`"),
        ("!prompt set --workspace", "the prompt text is missing"),
        ("!prompt set   \n  \n", "the prompt text is missing"),
        ("!prompt reset extra words", "`!prompt reset` takes only `--workspace` or `--global`"),
        ("!prompt history --global and more", "`!prompt history` takes only"),
    ],
)
async def test_wrong_usage_says_what_was_meant_and_changes_nothing(service, fake, typed, expected):
    await seed_all_scopes(service, SLACK)
    before = await snapshot(service, SLACK)
    answer = (await say(service, msg(SLACK, typed))).text
    assert expected in answer
    assert await snapshot(service, SLACK) == before
    assert fake.chat_requests == []
