"""A prompt applies only within its scope, falls back outward, reaches all instances, is audited."""

from __future__ import annotations

import dataclasses

import pytest

from bot.prompts import GLOBAL, channel_scope, workspace_scope
from tests.support.commands_harness import (
    CONSOLE,
    DM,
    PLACES,
    SLACK,
    SYSTEM_PROMPT,
    TEAMS,
    fake,
    make_service,
    msg,
    say,
    service,
    store_kind,
    system_prompt_seen,
)

__all__ = ["fake", "make_service", "service", "store_kind"]  # the fixtures


# ---------------------------------------------------------------- resolution and isolation


async def test_a_channel_prompt_does_not_leak_into_other_channels(service, fake):
    await say(service, msg(SLACK, "!prompt set Only for C1."))
    same_channel_other_thread = dataclasses.replace(SLACK, thread="1700000000.000300")
    assert await system_prompt_seen(service, fake, msg(same_channel_other_thread, "hi")) == (
        "Only for C1."
    )
    for elsewhere in (dataclasses.replace(SLACK, channel="C2"), DM, TEAMS, CONSOLE):
        assert await system_prompt_seen(service, fake, msg(elsewhere, "hi")) == SYSTEM_PROMPT


async def test_a_workspace_prompt_covers_only_its_own_workspaces_channels(service, fake):
    await say(service, msg(SLACK, "!prompt set --workspace For workspace T1."))
    for inside in (SLACK, dataclasses.replace(SLACK, channel="C2"), DM):
        assert await system_prompt_seen(service, fake, msg(inside, "hi")) == "For workspace T1."
    same_id_on_teams = dataclasses.replace(TEAMS, workspace="T1")
    for outside in (dataclasses.replace(SLACK, workspace="T2"), same_id_on_teams, CONSOLE):
        assert await system_prompt_seen(service, fake, msg(outside, "hi")) == SYSTEM_PROMPT


async def test_a_global_prompt_covers_everything_not_overridden(service, fake):
    await say(service, msg(TEAMS, "!prompt set --global Everywhere."))
    await say(service, msg(DM, "!prompt set Just this DM."))
    await say(service, msg(TEAMS, "!prompt set --workspace Just this tenant."))
    assert await system_prompt_seen(service, fake, msg(DM, "hi")) == "Just this DM."
    assert await system_prompt_seen(service, fake, msg(TEAMS, "hi")) == "Just this tenant."
    for place in (SLACK, dataclasses.replace(SLACK, workspace="T2"), CONSOLE):
        assert await system_prompt_seen(service, fake, msg(place, "hi")) == "Everywhere."


async def test_prompt_reset_falls_back_channel_then_workspace_then_global_then_default(
    service, fake
):
    await say(service, msg(SLACK, "!prompt set --global G."))
    await say(service, msg(SLACK, "!prompt set --workspace W."))
    await say(service, msg(SLACK, "!prompt set C."))
    steps = [
        ("!prompt reset", "W.", "workspace"),
        ("!prompt reset --workspace", "G.", "global"),
        ("!prompt reset --global", SYSTEM_PROMPT, "default (SYSTEM_PROMPT)"),
    ]
    assert await system_prompt_seen(service, fake, msg(SLACK, "hi")) == "C."
    for command, now, label in steps:
        answer = (await say(service, msg(SLACK, command))).text
        assert f"Now in effect here: the {label} prompt." in answer
        assert f"from the {label} scope" in (await say(service, msg(SLACK, "!prompt"))).text
        assert await system_prompt_seen(service, fake, msg(SLACK, "hi")) == now


async def test_a_teams_channel_prompt_applies_to_every_reply_chain_of_the_channel(service, fake):
    other_chain = dataclasses.replace(
        TEAMS, channel="19:general@thread.tacv2;messageid=1700000000999"
    )
    other_channel = dataclasses.replace(TEAMS, channel="19:random@thread.tacv2;messageid=17")
    await say(service, msg(TEAMS, "!prompt set For #general."))
    assert await system_prompt_seen(service, fake, msg(other_chain, "hi")) == "For #general."
    assert await system_prompt_seen(service, fake, msg(other_channel, "hi")) == SYSTEM_PROMPT
    # …while each reply chain keeps its own memory.
    assert len(await service.store.history(msg(other_chain, "").conversation_key)) == 2
    assert await service.store.history(msg(TEAMS, "").conversation_key) == []


@pytest.mark.parametrize("store_kind", ["redis"])
async def test_a_change_reaches_another_instance_on_its_very_next_turn(make_service, fake):
    a, b = make_service(), make_service()
    assert await system_prompt_seen(b, fake, msg(SLACK, "warm up")) == SYSTEM_PROMPT
    await say(a, msg(SLACK, "!prompt set Set on replica A."))
    assert await system_prompt_seen(b, fake, msg(SLACK, "next")) == "Set on replica A."
    assert "> Set on replica A." in (await say(b, msg(SLACK, "!prompt"))).text
    await say(a, msg(SLACK, "!prompt reset"))
    assert await system_prompt_seen(b, fake, msg(SLACK, "after reset")) == SYSTEM_PROMPT


# ------------------------------------------------------------------------------------ audit


async def test_audit_history_is_newest_first_with_who_and_old_and_new_text(service):
    await say(service, msg(SLACK, "!prompt set One.", user_name="Ada Admin"))
    await say(service, msg(SLACK, "!prompt set Two.", user_name="Ada Admin"))
    await say(service, msg(SLACK, "!prompt reset", user_name="Ada Admin"))
    records = await service.store.prompt_history(SLACK.channel_scope)
    assert [(r.action, r.old, r.new) for r in records] == [
        ("reset", "Two.", None),
        ("set", "One.", "Two."),
        ("set", None, "One."),
    ]
    assert {(r.scope, r.who, r.who_name) for r in records} == {
        (SLACK.channel_scope, "slack:UADMIN", "Ada Admin")
    }
    assert records[0].at >= records[1].at >= records[2].at

    answer = (await say(service, msg(SLACK, "!prompt history"))).text
    assert answer.index("removed:\n> Two.") < answer.index("set:\n> Two.")
    assert answer.index("set:\n> Two.") < answer.index("set:\n> One.")


@pytest.mark.parametrize("where", list(PLACES))
async def test_audit_records_the_verified_principal_and_display_name(service, where):
    place = PLACES[where]
    await say(service, msg(place, "!prompt set --workspace Hello."))
    [record] = await service.store.prompt_history(place.workspace_scope)
    assert record.who == f"{place.platform}:{place.admin}"
    assert record.who_name == f"Name of {place.admin}"


async def test_audit_history_is_kept_apart_per_scope(service):
    await say(service, msg(SLACK, "!prompt set Channel text."))
    await say(service, msg(SLACK, "!prompt set --workspace Workspace text."))
    await say(service, msg(SLACK, "!prompt set --global Global text."))
    await say(service, msg(TEAMS, "!prompt set --workspace Tenant text."))
    expected = {
        SLACK.channel_scope: ["Channel text."],
        SLACK.workspace_scope: ["Workspace text."],
        GLOBAL: ["Global text."],
        TEAMS.workspace_scope: ["Tenant text."],
        channel_scope("slack", "T1", "C2"): [],
        workspace_scope("slack", "T2"): [],
    }
    for scope, texts in expected.items():
        assert [r.new for r in await service.store.prompt_history(scope)] == texts
