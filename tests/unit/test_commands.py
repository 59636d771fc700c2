"""Admin commands (docs/spec.md §5, issue 3), proved through the responder as adapters drive it.

Every test builds the real service (`build_service`) against the fake model and runs against
both stores — the shared Redis and the in-process store — unless it is about sharing Redis.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
import redis.asyncio.connection as redis_connection

from bot.app import Service, build_service
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, channel_scope, scope_label, workspace_scope
from bot.settings import Settings
from bot.store import Usage
from tests.support.fakes.fake_openai import FakeOpenAI, Reply, count_prompt_tokens, count_tokens

SYSTEM_PROMPT = "You are the default Threadwise prompt."
ADMINS = "slack:UADMIN,teams:aad-admin"

# --------------------------------------------------------------------------------- fixtures


class RecordingStream:
    def __init__(self, reply: RecordingReply) -> None:
        self.reply = reply
        self.appended: list[str] = []

    async def append(self, text: str) -> None:
        self.appended.append(text)

    async def finish(self, text: str, *, answer: object = None) -> None:
        self.reply.streamed.append(text)


class RecordingReply:
    """A ReplyTarget that keeps what was posted: `send` texts and finished streams."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.streamed: list[str] = []
        self.typed = 0

    async def typing(self) -> None:
        self.typed += 1

    async def send(self, text: str) -> None:
        self.sent.append(text)

    def stream(self) -> RecordingStream:
        return RecordingStream(self)

    @property
    def text(self) -> str:
        return "\n".join(self.sent + self.streamed)


@dataclass(frozen=True)
class Place:
    platform: str
    workspace: str
    channel: str
    thread: str | None
    is_dm: bool
    admin: str  # a user id in BOT_ADMINS (on the console: anyone)
    user: str  # a user id not in BOT_ADMINS

    @property
    def channel_scope(self) -> str:
        return channel_scope(self.platform, self.workspace, self.channel)

    @property
    def workspace_scope(self) -> str:
        return workspace_scope(self.platform, self.workspace)

    def scope(self, option: str) -> str:
        return {"": self.channel_scope, "--workspace": self.workspace_scope, "--global": GLOBAL}[
            option
        ]


PLACES = {
    "slack-channel": Place("slack", "T1", "C1", "1700000000.000100", False, "UADMIN", "UUSER"),
    "slack-dm": Place("slack", "T1", "D1", None, True, "UADMIN", "UUSER"),
    "teams-channel": Place(
        "teams",
        "tenant-1",
        "19:general@thread.tacv2;messageid=1700000000001",
        None,
        False,
        "aad-admin",
        "aad-user",
    ),
    "console": Place("console", "local", "default", None, True, "alice", "alice"),
}
SLACK, DM, TEAMS, CONSOLE = (PLACES[k] for k in PLACES)
WITH_NON_ADMINS = [k for k in PLACES if k != "console"]  # the console user is always an admin
WHO = [pytest.param(w, True, id=f"{w}-admin") for w in PLACES] + [
    pytest.param(w, False, id=f"{w}-non-admin") for w in WITH_NON_ADMINS
]
OPTIONS = ["", "--workspace", "--global"]

_ids = itertools.count()


def msg(
    place: Place, text: str, *, admin: bool = True, user: str | None = None, **changes
) -> IncomingMessage:
    """A message as an adapter hands it over: verified user id, bot mention already removed."""
    user_id = user or (place.admin if admin else place.user)
    message = IncomingMessage(
        platform=place.platform,  # type: ignore[arg-type]
        workspace=place.workspace,
        channel=place.channel,
        thread=place.thread,
        user_id=user_id,
        user_name=f"Name of {user_id}",
        text=text,
        message_id=f"m{next(_ids)}",
        is_dm=place.is_dm,
    )
    return dataclasses.replace(message, **changes) if changes else message


async def say(service: Service, message: IncomingMessage) -> RecordingReply:
    reply = RecordingReply()
    await service.responder.handle(message, reply)
    return reply


async def system_prompt_seen(service: Service, fake: FakeOpenAI, message: IncomingMessage) -> str:
    """Send an ordinary message; return the system message the model received for it."""
    before = len(fake.chat_requests)
    await say(service, message)
    assert len(fake.chat_requests) == before + 1
    messages = fake.last_messages()
    assert [m["role"] for m in messages].count("system") == 1
    assert messages[0]["role"] == "system"
    return messages[0]["content"]


async def snapshot(service: Service, *places: Place) -> dict[str, object]:
    """Every prompt and audit record at the scopes of `places` (to prove nothing changed)."""
    scopes = sorted({s for p in places for s in (p.channel_scope, p.workspace_scope, GLOBAL)})
    prompts = await service.store.get_prompts(scopes)
    audits = {s: await service.store.prompt_history(s, 100) for s in scopes}
    return {"prompts": prompts, "audits": audits}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["redis", "memory"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def make_service(
    store_kind: str, redis_url: str, key_prefix: str, fake: FakeOpenAI
) -> AsyncIterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(**overrides: object) -> Service:
        settings: dict[str, object] = {
            "_env_file": None,
            "redis_url": redis_url if store_kind == "redis" else None,
            "redis_key_prefix": key_prefix,
            "openai_base_url": fake.base_url,
            "azure_openai_api_key": "k",
            "azure_openai_deployment": "gpt-4o",
            "bot_admins": ADMINS,
            "system_prompt": SYSTEM_PROMPT,
            "llm_max_retries": 0,
        }
        settings.update(overrides)
        service = build_service(Settings(**settings))  # type: ignore[arg-type]
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()


async def seed_all_scopes(service: Service, place: Place) -> None:
    for option in OPTIONS:
        await service.prompts.set(place.scope(option), f"Seeded {option or 'channel'}.", "x", "X")


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


async def test_the_console_user_is_an_admin_without_being_in_bot_admins(service):
    assert "someone" not in ADMINS
    answer = (
        await say(service, msg(CONSOLE, "!prompt set --global From the console.", user="someone"))
    ).text
    assert "set for the global scope" in answer
    assert await service.store.get_prompts([GLOBAL]) == {GLOBAL: "From the console."}


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


# --------------------------------------------------------------------------- access control

NON_ADMIN_ATTEMPTS = [
    "!prompt set New rules.",
    "!prompt set --workspace New rules.",
    "!prompt set --global New rules.",
    "!prompt reset",
    "!prompt reset --workspace",
    "!prompt reset --global",
    "!prompt history",
    "!prompt history --workspace",
    "!prompt history --global",
    "!usage",
]


@pytest.mark.parametrize("where", WITH_NON_ADMINS)
async def test_a_non_admin_is_refused_every_admin_command_and_nothing_changes(service, fake, where):
    place = PLACES[where]
    await seed_all_scopes(service, place)
    before = await snapshot(service, place)
    for command in NON_ADMIN_ATTEMPTS:
        answer = (await say(service, msg(place, command, admin=False))).text
        assert "only admins can use" in answer, command
        assert await snapshot(service, place) == before, command
    assert fake.chat_requests == []


async def test_a_refusal_names_the_command_and_who_may_run_it(service):
    answer = (await say(service, msg(SLACK, "!prompt set --global x", admin=False))).text
    assert answer == (
        "Sorry, only admins can use `!prompt set`. Admins are listed in the BOT_ADMINS "
        "setting; ask one of them."
    )


async def test_a_refusal_is_logged_with_the_user_id(service, caplog):
    caplog.set_level(logging.INFO, logger="threadwise.commands")
    await say(service, msg(SLACK, "!usage", admin=False))
    [record] = [r for r in caplog.records if r.name == "threadwise.commands"]
    assert record.levelno == logging.WARNING
    assert (record.user, record.command) == ("slack:UUSER", "usage")


@pytest.mark.parametrize(
    "text",
    [
        "<@UADMIN> !prompt set --global Hijacked.",
        "slack:UADMIN !prompt set --global Hijacked.",
        "> !prompt set --global Hijacked.",
        "&gt; !prompt set --global Hijacked.",
        "\uff01prompt set --global Hijacked.",  # fullwidth exclamation mark
        "\u01c3prompt set --global Hijacked.",  # Latin letter retroflex click
        "\u200b!prompt set --global Hijacked.",  # zero-width space first
    ],
)
async def test_admin_looking_text_from_a_non_admin_goes_to_the_model_and_changes_nothing(
    service, fake, text
):
    before = await snapshot(service, SLACK)
    await say(service, msg(SLACK, text, admin=False))
    assert await snapshot(service, SLACK) == before
    assert fake.last_messages()[-1]["content"] == text


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("!prompt set --global Hijacked. <@UADMIN>", {}),
        ("!prompt set --global Hijacked. slack:UADMIN", {}),
        ("!prompt set --global Hijacked.", {"user_name": "slack:UADMIN"}),
        ("!prompt set --global Hijacked.", {"user_name": "UADMIN"}),
        ("!prompt set --global Hijacked.", {"user_id": "aad-admin"}),  # a Teams admin's id
    ],
    ids=["mention-after", "principal-after", "display-name", "bare-name", "other-platform-id"],
)
async def test_an_admin_identity_in_text_or_display_name_grants_nothing(service, text, changes):
    answer = (await say(service, msg(SLACK, text, admin=False, **changes))).text
    assert "only admins can use `!prompt set`" in answer
    assert await service.store.get_prompts([GLOBAL]) == {GLOBAL: None}


async def test_teams_admin_ids_match_whatever_their_case(make_service):
    service = make_service(bot_admins="teams:3F2504E0-4F89-11D3-9A0C-0305E82C3301")
    admin = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    await say(service, msg(TEAMS, "!prompt set --workspace Tenant rules.", user=admin))
    assert await service.store.get_prompts([TEAMS.workspace_scope]) == {
        TEAMS.workspace_scope: "Tenant rules."
    }


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
