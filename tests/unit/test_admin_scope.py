"""Workspace-scoped admins (docs/spec.md §5): `slack:<team>:<user>`, `teams:<tenant>:<aad>`.

A scoped admin changes channel and workspace prompts of that workspace only; `--global` and
other workspaces need an unscoped entry. Proved through the responder, as adapters drive it,
against the shared Redis and the in-process store.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from pydantic import ValidationError

from bot.app import Service, build_service
from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, channel_scope, workspace_scope
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.recording import RecordingReply

GUID_TENANT = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
ADMINS = ",".join(
    [
        "slack:T1:USCOPED",  # admin of Slack workspace T1 only
        f"teams:{GUID_TENANT}:3F2504E0-4F89-11D3-9A0C-0305E82C3301",  # of that tenant only
        "slack:UGLOBAL",  # the old, unscoped form: everywhere
        "teams:aad-global",
    ]
)


@dataclass(frozen=True)
class Place:
    platform: str
    workspace: str
    channel: str
    thread: str | None = None

    @property
    def scopes(self) -> dict[str, str]:
        return {
            "": channel_scope(self.platform, self.workspace, self.channel),
            "--workspace": workspace_scope(self.platform, self.workspace),
            "--global": GLOBAL,
        }


SLACK_T1 = Place("slack", "T1", "C1", "1700000000.000100")
SLACK_T2 = Place("slack", "T2", "C9", "1700000000.000200")
SLACK_T12 = Place("slack", "T12", "C1", "1700000000.000300")  # T1 is a prefix of it
TEAMS_HOME = Place(
    "teams", GUID_TENANT.lower(), "19:general@thread.tacv2;messageid=1700000000001"
)  # Teams sends tenant ids lower-case; the channel id holds colons of its own
TEAMS_OTHER = Place("teams", "0d2a4d0e-aaaa-bbbb-cccc-000000000002", "19:x@thread.tacv2")
SCOPED = {"slack": "USCOPED", "teams": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}
UNSCOPED = {"slack": "UGLOBAL", "teams": "aad-global"}
HOME = {"slack": SLACK_T1, "teams": TEAMS_HOME}
AWAY = {"slack": SLACK_T2, "teams": TEAMS_OTHER}

_ids = itertools.count()


def msg(place: Place, user: str, text: str) -> IncomingMessage:
    return IncomingMessage(
        platform=place.platform,  # type: ignore[arg-type]
        workspace=place.workspace,
        channel=place.channel,
        thread=place.thread,
        user_id=user,
        user_name=f"Name of {user}",
        text=text,
        message_id=f"m{next(_ids)}",
    )


async def say(service: Service, place: Place, user: str, text: str) -> str:
    reply = RecordingReply()
    await service.responder.handle(msg(place, user, text), reply)
    return "\n".join(reply.posts)


async def snapshot(service: Service, *places: Place) -> dict[str, object]:
    scopes = sorted({s for p in places for s in p.scopes.values()})
    return {
        "prompts": await service.store.get_prompts(scopes),
        "audits": {s: await service.store.prompt_history(s, 100) for s in scopes},
    }


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture(params=["redis", "memory"])
async def make_service(
    request: pytest.FixtureRequest, redis_url: str, key_prefix: str, fake: FakeOpenAI
) -> AsyncIterator[Callable[..., Service]]:
    made: list[Service] = []

    def make(**overrides: object) -> Service:
        settings: dict[str, object] = {
            "_env_file": None,
            "redis_url": redis_url if request.param == "redis" else None,
            "redis_key_prefix": key_prefix,
            "openai_base_url": fake.base_url,
            "azure_openai_api_key": "k",
            "azure_openai_deployment": "gpt-4o",
            "bot_admins": ADMINS,
            "llm_max_retries": 0,
            **overrides,
        }
        service = build_service(Settings(**settings))  # type: ignore[arg-type]
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()


@pytest.fixture
def service(make_service: Callable[..., Service]) -> Service:
    return make_service()


PLATFORMS = ["slack", "teams"]


# ------------------------------------------------------------------- in their own workspace


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_scoped_admin_sets_the_channel_and_workspace_prompts_of_their_workspace(
    service, platform
):
    place, user = HOME[platform], SCOPED[platform]
    answer = await say(service, place, user, "!prompt set Channel rules.")
    assert "set for the channel scope" in answer
    answer = await say(service, place, user, "!prompt set --workspace Workspace rules.")
    assert "scope" in answer and "set for the" in answer
    assert await service.store.get_prompts(list(place.scopes.values())) == {
        place.scopes[""]: "Channel rules.",
        place.scopes["--workspace"]: "Workspace rules.",
        GLOBAL: None,
    }
    history = await say(service, place, user, "!prompt history --workspace")
    assert "Workspace rules." in history
    assert "Removed the channel prompt" in await say(service, place, user, "!prompt reset")
    assert "Token usage" in await say(service, place, user, "!usage")


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_scoped_admin_is_refused_in_another_workspace_nothing_changes_and_it_is_logged(
    service, platform, caplog
):
    away, user = AWAY[platform], SCOPED[platform]
    await service.prompts.set(away.scopes[""], "Theirs.", "x", "X")
    before = await snapshot(service, away, HOME[platform])
    caplog.set_level(logging.INFO, logger="threadwise.commands")
    for command in [
        "!prompt set Mine now.",
        "!prompt set --workspace Mine now.",
        "!prompt set --global Mine now.",
        "!prompt reset",
        "!prompt reset --workspace",
        "!prompt history",
        "!prompt history --workspace",
        "!usage",
    ]:
        answer = await say(service, away, user, command)
        assert "only admins can use" in answer, command
        assert await snapshot(service, away, HOME[platform]) == before, command
    refusals = [r for r in caplog.records if r.name == "threadwise.commands"]
    assert len(refusals) == 8
    assert all(r.levelno == logging.WARNING for r in refusals)
    assert {(r.user, r.workspace) for r in refusals} == {
        (f"{platform}:{user}", away.scopes["--workspace"])
    }


async def test_a_workspace_whose_id_starts_with_the_scoped_workspace_is_another_workspace(
    service,
):
    answer = await say(service, SLACK_T12, "USCOPED", "!prompt set --workspace Mine.")
    assert "only admins can use" in answer
    assert await service.store.get_prompts([SLACK_T12.scopes["--workspace"]]) == {
        SLACK_T12.scopes["--workspace"]: None
    }


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_scoped_admin_is_refused_global_in_their_own_workspace(service, platform, caplog):
    place, user = HOME[platform], SCOPED[platform]
    await service.prompts.set(GLOBAL, "Everyone's prompt.", "x", "X")
    before = await snapshot(service, place)
    caplog.set_level(logging.INFO, logger="threadwise.commands")
    for action, command in [
        ("prompt set", "!prompt set --global Hijacked."),
        ("prompt reset", "!prompt reset --global"),
        ("prompt history", "!prompt history --global"),
    ]:
        answer = await say(service, place, user, command)
        assert answer == (
            f"Sorry, `!{action} --global` would change every workspace, and you are an admin "
            "of this one only. Ask an admin listed in BOT_ADMINS without a workspace."
        ), command
        assert await snapshot(service, place) == before
    records = [r for r in caplog.records if r.name == "threadwise.commands"]
    assert [(r.command, r.scope) for r in records] == [
        ("prompt set", GLOBAL),
        ("prompt reset", GLOBAL),
        ("prompt history", GLOBAL),
    ]


# ------------------------------------------------------------------------- unscoped entries


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_an_unscoped_admin_still_changes_every_scope_in_every_workspace(service, platform):
    user = UNSCOPED[platform]
    for place in (HOME[platform], AWAY[platform]):
        for option, scope in place.scopes.items():
            text = f"{option or 'channel'} by {user} in {place.workspace}"
            answer = await say(service, place, user, f"!prompt set {option} {text}".strip())
            assert "set for the" in answer, answer
            assert (await service.store.get_prompts([scope]))[scope] == text
        assert "Token usage" in await say(service, place, user, "!usage")


async def test_the_operators_shell_may_change_any_scope_whatever_bot_admins_says(service):
    cli = IncomingMessage(
        platform="console",
        workspace="-",
        channel="-",
        thread=None,
        user_id="ops",
        user_name="cli:ops",
        text="!prompt set --global From the shell.",
        message_id="cli",
        is_dm=True,
    )
    result = await service.commands.run(cli, principal="cli:ops", admin=True)
    assert result.ok
    assert await service.store.get_prompts([GLOBAL]) == {GLOBAL: "From the shell."}


# ------------------------------------------------------------------------------------ !help

CANDIDATES = [
    (sub, option)
    for sub in ("set", "reset", "history")
    for option in ("", "--workspace", "--global")
] + [("usage", "")]
_HELP_LINE = re.compile(r"^• `!(prompt (set|reset|history)|usage)(?: \[([^\]]+)\])?")


def listed(help_text: str) -> set[tuple[str, str]]:
    """What `!help` offers: (sub-command, option) pairs, "" for no option."""
    found: set[tuple[str, str]] = set()
    for line in help_text.splitlines():
        m = _HELP_LINE.match(line)
        if not m:
            continue
        sub = m[2] or "usage"
        found.add((sub, ""))
        found.update((sub, o) for o in (m[3] or "").split("|") if o)
    return found


def candidate_text(sub: str, option: str) -> str:
    if sub == "usage":
        return "!usage"
    text = f"!prompt {sub} {option}".strip()
    return text + " Probe." if sub == "set" else text


EVERYWHERE = set(CANDIDATES)
WORKSPACE_ONLY = {c for c in CANDIDATES if c[1] != "--global"}


@pytest.mark.parametrize(
    ("place", "user", "expected"),
    [
        pytest.param(SLACK_T1, "USCOPED", WORKSPACE_ONLY, id="slack-scoped-home"),
        pytest.param(SLACK_T2, "USCOPED", set(), id="slack-scoped-away"),
        pytest.param(SLACK_T1, "UGLOBAL", EVERYWHERE, id="slack-unscoped"),
        pytest.param(SLACK_T1, "UNOBODY", set(), id="slack-non-admin"),
        pytest.param(TEAMS_HOME, SCOPED["teams"], WORKSPACE_ONLY, id="teams-scoped-home"),
        pytest.param(TEAMS_OTHER, SCOPED["teams"], set(), id="teams-scoped-away"),
        pytest.param(TEAMS_OTHER, "aad-global", EVERYWHERE, id="teams-unscoped"),
    ],
)
async def test_help_lists_exactly_what_the_user_may_run_here(service, fake, place, user, expected):
    help_text = await say(service, place, user, "!help")
    assert listed(help_text) == expected
    for command in ("!help", "!reset", "!prompt` / `!prompt show"):
        assert f"`{command}`" in help_text
    if expected == WORKSPACE_ONLY:
        assert "• `!prompt set [--workspace] TEXT`" in help_text
    ran = set()
    for sub, option in CANDIDATES:
        answer = await say(service, place, user, candidate_text(sub, option))
        if "Sorry" not in answer:
            ran.add((sub, option))
    assert ran == expected
    assert fake.chat_requests == []


# --------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "entry",
    ["slack:T1:", "slack::U1", "teams::", "slack:T1:U1:extra", "slack:", "irc:U1", "slack:T1:U1,"],
)
def test_a_bot_admins_entry_with_a_missing_or_extra_part_stops_start_up(entry):
    if entry.endswith(","):  # a trailing comma is fine; the entry before it is valid
        assert Settings(_env_file=None, bot_admins=entry).admins == {"slack:T1:U1"}  # type: ignore[call-arg]
        return
    with pytest.raises(ValidationError, match="slack:<team id>:<user id>"):
        Settings(_env_file=None, bot_admins=entry)  # type: ignore[call-arg]
