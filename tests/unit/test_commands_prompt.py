"""`!prompt`, `!prompt show`, `set`, `reset`, `history` at each scope, up to PROMPT_MAX_TOKENS."""

from __future__ import annotations

import pytest

from bot.prompts import scope_label
from tests.support.commands_harness import (
    OPTIONS,
    PLACES,
    SLACK,
    SYSTEM_PROMPT,
    WHO,
    fake,
    make_service,
    msg,
    say,
    seed_all_scopes,
    service,
    store_kind,
    system_prompt_seen,
)
from tests.support.fakes.fake_openai import count_tokens

__all__ = ["fake", "make_service", "service", "store_kind"]  # the fixtures


# ---------------------------------------------------------------------- !prompt / show


@pytest.mark.parametrize(("where", "admin"), WHO)
async def test_prompt_and_prompt_show_tell_anyone_the_effective_prompt_and_its_scope(
    service, fake, where, admin
):
    place = PLACES[where]
    for command in ("!prompt", "!prompt show"):
        answer = (await say(service, msg(place, command, admin=admin))).text
        assert "from the default (SYSTEM_PROMPT) scope" in answer
        assert f"> {SYSTEM_PROMPT}" in answer

    await service.prompts.set(place.workspace_scope, "Workspace rules.\nLine two.", "x", "X")
    for command in ("!prompt", "!prompt show"):
        answer = (await say(service, msg(place, command, admin=admin))).text
        assert f"from the {scope_label(place.workspace_scope)} scope" in answer
        assert "> Workspace rules.\n> Line two." in answer
    assert fake.chat_requests == []


async def test_prompt_show_prints_a_long_prompt_in_full(service):
    text = "\n".join(
        f"Rule {i}: answer carefully and cite the handbook section." for i in range(150)
    )
    await service.prompts.set(SLACK.channel_scope, text, "x", "X")
    answer = (await say(service, msg(SLACK, "!prompt show", admin=False))).text
    assert "> Rule 149: answer carefully and cite the handbook section." in answer


# ------------------------------------------------------------------------------ !prompt set


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("where", list(PLACES))
async def test_admin_prompt_set_sets_the_prompt_of_the_chosen_scope(service, fake, where, option):
    place = PLACES[where]
    text = f"Rules for {option or 'this channel'}."
    command = " ".join(filter(None, ["!prompt set", option, text]))
    answer = (await say(service, msg(place, command))).text
    assert f"System prompt set for the {scope_label(place.scope(option))} scope" in answer

    scopes = [place.scope(o) for o in OPTIONS]
    assert await service.store.get_prompts(scopes) == {
        s: (text if s == place.scope(option) else None) for s in scopes
    }
    assert fake.chat_requests == []
    assert await system_prompt_seen(service, fake, msg(place, "a question")) == text


@pytest.mark.parametrize(
    "command",
    [
        "!Prompt SET --Workspace Be terse.",
        "!prompt set \u2014workspace Be terse.",  # macOS/iOS smart punctuation: -- → em dash
        "!prompt set \u2013workspace Be terse.",  # … or an en dash
    ],
)
async def test_command_words_and_options_tolerate_capitals_and_smart_dashes(service, command):
    await say(service, msg(SLACK, command))
    assert await service.store.get_prompts([SLACK.workspace_scope, SLACK.channel_scope]) == {
        SLACK.workspace_scope: "Be terse.",
        SLACK.channel_scope: None,
    }


async def test_a_double_dash_ends_the_options_so_a_prompt_may_start_with_dashes(service):
    await say(service, msg(SLACK, "!prompt set -- --verbose answers are banned."))
    assert await service.store.get_prompts([SLACK.channel_scope]) == {
        SLACK.channel_scope: "--verbose answers are banned."
    }


SLACK_FORMATTED = (
    "*You are Threadwise*, the _helpful_ bot for ~ops~.\n"
    "\n"
    "• Answer in at most 3 lines\n"
    "• Put commands in `code`\n"
    "> Quote the user when unsure\n"
    "```\n"
    "if x:\n"
    "    return y\n"
    "```\n"
    "See <https://example.com/wiki|our wiki> :wave: <@U123> & <!here>"
)
TEAMS_FORMATTED = (
    "**You are Threadwise**\n"
    "\n"
    "1. Be *brief*\n"
    "   - nested point\n"
    "2. Cite [the docs](https://example.com)\n"
    "\n"
    "| col | val |\n"
    "|-----|-----|\n"
    "| a   | 1   |"
)
CODE_FIRST = "    indented code on the first line\n\tand a tab\nend"


@pytest.mark.parametrize(
    ("where", "typed", "stored"),
    [
        ("slack-channel", "!prompt set\n" + SLACK_FORMATTED, SLACK_FORMATTED),
        ("slack-channel", "!prompt set " + SLACK_FORMATTED + "\n\n  ", SLACK_FORMATTED),
        ("slack-dm", "!prompt set --workspace\n" + SLACK_FORMATTED, SLACK_FORMATTED),
        ("teams-channel", "!prompt set --global \n\n" + TEAMS_FORMATTED, TEAMS_FORMATTED),
        ("teams-channel", "!prompt set   " + TEAMS_FORMATTED, TEAMS_FORMATTED),
        ("console", "!prompt set\n" + CODE_FIRST, CODE_FIRST),
    ],
    ids=[
        "slack-newline",
        "slack-same-line",
        "slack-option",
        "teams-option",
        "teams-spaces",
        "code",
    ],
)
async def test_multiline_prompt_text_is_kept_exactly_as_typed(service, fake, where, typed, stored):
    place = PLACES[where]
    option = next((o for o in OPTIONS[1:] if o in typed.split("\n")[0]), "")
    await say(service, msg(place, typed))
    assert await service.store.get_prompts([place.scope(option)]) == {place.scope(option): stored}
    assert await system_prompt_seen(service, fake, msg(place, "hello")) == stored


async def test_the_model_receives_exactly_the_effective_prompt_as_its_system_message(service, fake):
    text = "Ünïcödé ✅ 🚀\n  inner spaces  \n\ttab\n<|endoftext|> is just text\n«quotes» — dash"
    await say(service, msg(SLACK, "!prompt set\n" + text))
    await say(service, msg(SLACK, "hello"))
    sent = fake.last_messages()
    assert sent[0] == {"role": "system", "content": text}
    assert [m["role"] for m in sent] == ["system", "user"]


# ---------------------------------------------------------------------------- !prompt reset


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("where", list(PLACES))
async def test_admin_prompt_reset_removes_only_that_scopes_prompt(service, fake, where, option):
    place = PLACES[where]
    await seed_all_scopes(service, place)
    answer = (await say(service, msg(place, f"!prompt reset {option}".strip()))).text
    assert f"Removed the {scope_label(place.scope(option))} prompt" in answer

    scopes = [place.scope(o) for o in OPTIONS]
    assert await service.store.get_prompts(scopes) == {
        place.scope(o): (None if o == option else f"Seeded {o or 'channel'}.") for o in OPTIONS
    }
    [record, *_] = await service.store.prompt_history(place.scope(option))
    assert (record.action, record.old, record.new) == (
        "reset",
        f"Seeded {option or 'channel'}.",
        None,
    )
    assert fake.chat_requests == []


async def test_prompt_reset_with_nothing_set_says_so_and_records_nothing(service):
    answer = (await say(service, msg(SLACK, "!prompt reset --workspace"))).text
    assert "There was no workspace prompt to remove" in answer
    assert await service.store.prompt_history(SLACK.workspace_scope) == []


# -------------------------------------------------------------------------- !prompt history


@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("where", list(PLACES))
async def test_admin_prompt_history_lists_the_changes_at_that_scope(service, where, option):
    place = PLACES[where]
    for o in OPTIONS:
        await say(service, msg(place, f"!prompt set {o} Text for {o or 'channel'}.".strip()))
    await say(service, msg(place, f"!prompt set {option} Again {option or 'channel'}."))

    answer = (await say(service, msg(place, f"!prompt history {option}".strip()))).text
    assert f"Last changes to the {scope_label(place.scope(option))} prompt" in answer
    assert f"Name of {place.admin} ({place.platform}:{place.admin}) set:" in answer
    mine = f"Text for {option or 'channel'}."
    assert answer.index(f"> Again {option or 'channel'}.") < answer.index(f"> {mine}")
    for other in OPTIONS:
        if other != option:
            assert f"Text for {other or 'channel'}." not in answer


# --------------------------------------------------------------------- PROMPT_MAX_TOKENS


async def test_a_prompt_over_prompt_max_tokens_is_refused_with_its_size(make_service):
    service = make_service(prompt_max_tokens=50)
    await say(service, msg(SLACK, "!prompt set Short."))
    long = " ".join(f"rule{i}" for i in range(60))
    size = count_tokens(long)
    assert size > 50
    answer = (await say(service, msg(SLACK, "!prompt set " + long))).text
    assert f"That prompt is {size} tokens; the limit is 50 (PROMPT_MAX_TOKENS)" in answer
    assert "Nothing changed" in answer
    assert await service.store.get_prompts([SLACK.channel_scope]) == {SLACK.channel_scope: "Short."}
    assert len(await service.store.prompt_history(SLACK.channel_scope)) == 1


async def test_a_prompt_of_exactly_prompt_max_tokens_is_accepted(make_service):
    text = " ".join(f"rule{i}" for i in range(20))
    service = make_service(prompt_max_tokens=count_tokens(text))
    await say(service, msg(SLACK, "!prompt set " + text))
    assert await service.store.get_prompts([SLACK.channel_scope]) == {SLACK.channel_scope: text}
