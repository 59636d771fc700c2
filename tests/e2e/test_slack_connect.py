"""Slack Connect and Enterprise Grid (issue 12 §4): a message or command belongs to the app's
installation, never to the workspace it was written in.

In a shared channel an event's `team_id` (and a slash command's) is the workspace the message
came from; the installation is `authorizations[0]` / bolt's authorize result. Proved through
the real bolt app, the real core (responder, commands, prompts) on the shared Redis, the fake
model and `FakeSlack`, and once through `threadwise serve`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.slack import SlackAdapter
from bot.app import Service, build_service
from bot.messages import conversation_key
from bot.prompts import channel_scope, workspace_scope
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    app_mention,
    event_callback,
    form,
    new_ts,
    signed_headers,
    slash_command,
)
from tests.support.helpers import ServeProcess

SECRET = DEFAULT_SIGNING_SECRET
INSTALLED = "T0FAKE"  # the workspace the app is installed in (FakeSlack's auth.test)
PARTNER = "T0PARTNER"  # another organisation, sharing channels with it
SIBLING = "T0SIBLING"  # another workspace of the same Enterprise Grid org
GRID = "E0GRID"
ADMIN = "U1"  # an admin, of the installation's workspace
PARTNER_ADMIN = "UPARTNER"  # of the partner org, listed in BOT_ADMINS by user id
GUEST = "UGUEST"  # of the partner org, no admin
ADMINS = f"slack:{ADMIN},slack:{PARTNER_ADMIN}"
USERS: dict[str, Any] = {
    ADMIN: "Ann Admin",
    PARTNER_ADMIN: {"display_name": "Pat Partner", "team_id": PARTNER},
    GUEST: {"display_name": "Gus Guest", "team_id": PARTNER},
}
WS1, WS2 = "T0WS1", "T0WS2"  # two workspaces of an org with an org-wide install
ORG_WIDE = {"team_id": None, "enterprise_id": GRID, "is_enterprise_install": True}


def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def shared_mention(text: str, *, user: str, ch: str, ts: str, origin: str = PARTNER) -> dict:
    """A mention in a Slack Connect channel, by `user` of `origin`: an event of `origin`."""
    return app_mention(text, user=user, channel=ch, ts=ts, team=origin, user_team=origin)


@dataclass
class Stack:
    slack: FakeSlack
    model: FakeOpenAI
    service: Service
    url: str
    http: aiohttp.ClientSession

    async def event(self, event: dict, **envelope: Any) -> None:
        body = json.dumps(event_callback(event, **envelope))
        async with self.http.post(self.url, data=body, headers=signed_headers(body)) as r:
            assert r.status == 200

    async def command(self, text: str, **fields: Any) -> str:
        """The ephemeral answer to `/threadwise text`."""
        before = len(self.slack.responses)
        body = form(slash_command(text, response_url=self.slack.response_url(), **fields))
        headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
        async with self.http.post(self.url, data=body, headers=headers) as r:
            assert r.status == 200
        await self.slack.wait_for(lambda s: len(s.responses) > before)
        return self.slack.responses[-1]["text"]

    async def answer(self, ch: str, ts: str) -> str:
        """The bot's finished reply in the thread of `ts`."""
        await self.slack.wait_for(lambda s: any(not m.streaming for m in s.thread(ch, ts)))
        await self.service.responder.drain(10)
        return "\n".join(self.slack.thread_texts(ch, ts))

    def system_prompt(self) -> str:
        first = self.model.last_messages()[0]
        assert first["role"] == "system"
        return first["content"]

    async def prompts(self, *scopes: str) -> dict[str, str | None]:
        return await self.service.store.get_prompts(list(scopes))


@asynccontextmanager
async def running(
    slack: FakeSlack, model: FakeOpenAI, redis_url: str, key_prefix: str
) -> AsyncIterator[Stack]:
    service = build_service(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            redis_url=redis_url,
            redis_key_prefix=key_prefix,
            openai_base_url=model.base_url,
            azure_openai_api_key="k",
            azure_openai_deployment="gpt-4o",
            bot_admins=ADMINS,
            llm_max_retries=0,
        )
    )
    adapter = SlackAdapter(
        bot_token=slack.token,
        signing_secret=SECRET,
        app_token=None,
        api_url=slack.api_url,
        thread_followups=True,
        handler=service.responder,
        cache=service.store,
        metrics=service.metrics,
    )
    app = web.Application()
    adapter.mount(app)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        await adapter.start()
        async with aiohttp.ClientSession() as http:
            yield Stack(slack, model, service, str(server.make_url("/slack/events")), http)
    finally:
        await adapter.close()
        await service.responder.drain(10)
        await server.close()
        await service.close()


@pytest.fixture
async def model() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
async def stack(model, redis_url, key_prefix) -> AsyncIterator[Stack]:
    async with FakeSlack(users=USERS) as slack, running(slack, model, redis_url, key_prefix) as s:
        yield s


@pytest.fixture
async def grid(model, redis_url, key_prefix) -> AsyncIterator[Stack]:
    """Installed in one workspace (INSTALLED) of an Enterprise Grid org."""
    fake = FakeSlack(users=USERS, enterprise_id=GRID)
    async with fake as slack, running(slack, model, redis_url, key_prefix) as s:
        yield s


@pytest.fixture
async def org_wide(model, redis_url, key_prefix) -> AsyncIterator[Stack]:
    """Installed org-wide: one token for every workspace; authorizations carry no team.

    auth.test names one workspace of the org as its team: whichever it names, the org is the
    installation.
    """
    fake = FakeSlack(users=USERS, team_id=WS1, enterprise_id=GRID, org_install=True)
    async with fake as slack, running(slack, model, redis_url, key_prefix) as s:
        yield s


# -- Slack Connect ---------------------------------------------------------------------------


async def test_shared_channel_gets_the_installations_workspace_prompt_and_guests_are_users(
    stack,
):
    home, home_ts = channel(), new_ts()
    await stack.event(
        app_mention(
            "<@UBOT> !prompt set --workspace Answer in haiku.", ts=home_ts, channel=home, user=ADMIN
        )
    )
    assert "workspace scope" in await stack.answer(home, home_ts)

    shared, ts = channel(), new_ts()
    await stack.event(
        shared_mention("<@UBOT> what is Redis?", user=GUEST, ch=shared, ts=ts),
        team_id=PARTNER,
        installation={"team_id": INSTALLED},
        shared=True,
    )
    assert await stack.answer(shared, ts) == "Echo: what is Redis?"
    assert stack.system_prompt() == "Answer in haiku."
    # The stream is addressed to the guest, who belongs to the partner org.
    [start] = [c for c in stack.slack.calls_to("chat.startStream") if c.params["channel"] == shared]
    assert (start.params["recipient_team_id"], start.params["recipient_user_id"]) == (
        PARTNER,
        GUEST,
    )
    # The conversation is the installation's: where its memory is kept.
    assert await stack.service.store.history(conversation_key("slack", INSTALLED, shared, ts))

    # A partner-org user not in BOT_ADMINS is just a user there.
    ts2 = new_ts()
    await stack.event(
        shared_mention("<@UBOT> !prompt set --workspace pwned", user=GUEST, ch=shared, ts=ts2),
        team_id=PARTNER,
        installation={"team_id": INSTALLED},
        shared=True,
    )
    assert "admin" in (await stack.answer(shared, ts2)).lower()
    assert await stack.prompts(workspace_scope("slack", INSTALLED)) == {
        workspace_scope("slack", INSTALLED): "Answer in haiku."
    }


async def test_prompt_set_workspace_from_a_shared_channel_writes_the_installations_scope(stack):
    shared, ts = channel(), new_ts()
    await stack.event(
        shared_mention(
            "<@UBOT> !prompt set --workspace Be brief.", user=PARTNER_ADMIN, ch=shared, ts=ts
        ),
        team_id=PARTNER,
        installation={"team_id": INSTALLED},
        shared=True,
    )
    # BOT_ADMINS `slack:UPARTNER` matches by user id, whichever org the user is in.
    assert "System prompt set for the workspace scope" in await stack.answer(shared, ts)
    assert await stack.prompts(
        workspace_scope("slack", INSTALLED), workspace_scope("slack", PARTNER)
    ) == {workspace_scope("slack", INSTALLED): "Be brief.", workspace_scope("slack", PARTNER): None}

    # It is the prompt of the installation's own channels, whose keys are what they always were.
    home, home_ts = channel(), new_ts()
    await stack.event(app_mention("<@UBOT> hello", channel=home, ts=home_ts, user=ADMIN))
    assert await stack.answer(home, home_ts) == "Echo: hello"
    assert stack.system_prompt() == "Be brief."
    history = await stack.service.store.history(f"slack:{INSTALLED}:{home}:{home_ts}")
    assert [m.content for m in history] == ["hello", "Echo: hello"]


@pytest.mark.parametrize("caller", [ADMIN, PARTNER_ADMIN])
async def test_slash_command_in_a_shared_channel_resolves_the_same_scope_as_an_event(stack, caller):
    """A command's `team_id` is its caller's workspace; a shared channel's events say another."""
    caller_team = INSTALLED if caller == ADMIN else PARTNER
    shared = channel()
    answer = await stack.command(
        "prompt set Shared channel rules.", user=caller, channel=shared, team=caller_team
    )
    assert "System prompt set for the channel scope" in answer
    assert await stack.prompts(channel_scope("slack", INSTALLED, shared)) == {
        channel_scope("slack", INSTALLED, shared): "Shared channel rules."
    }

    ts = new_ts()
    await stack.event(
        shared_mention("<@UBOT> and now?", user=GUEST, ch=shared, ts=ts),
        team_id=PARTNER,
        installation={"team_id": INSTALLED},
        shared=True,
    )
    assert await stack.answer(shared, ts) == "Echo: and now?"
    assert stack.system_prompt() == "Shared channel rules."
    # …and back: a command from the other org reads what the event's conversation uses.
    shown = await stack.command("prompt", user=GUEST, channel=shared, team=PARTNER)
    assert "from the channel scope" in shown and "Shared channel rules." in shown


# -- Enterprise Grid -------------------------------------------------------------------------


async def test_grid_workspace_install_keeps_its_workspace_for_other_workspaces_of_the_org(grid):
    await grid.command("prompt set --workspace Grid rules.", user=ADMIN, enterprise_id=GRID)
    assert await grid.prompts(workspace_scope("slack", INSTALLED)) == {
        workspace_scope("slack", INSTALLED): "Grid rules."
    }
    # A channel shared with a sibling workspace of the org: its events are the sibling's.
    ch, ts = channel(), new_ts()
    await grid.event(
        app_mention("<@UBOT> hi", user=GUEST, channel=ch, ts=ts, team=SIBLING, user_team=SIBLING),
        team_id=SIBLING,
        enterprise_id=GRID,
        installation={"team_id": INSTALLED, "enterprise_id": GRID},
    )
    assert await grid.answer(ch, ts) == "Echo: hi"
    assert grid.system_prompt() == "Grid rules."
    shown = await grid.command("prompt", user=GUEST, channel=ch, team=SIBLING, enterprise_id=GRID)
    assert "from the workspace scope" in shown and "Grid rules." in shown


async def test_org_wide_install_is_one_workspace_the_org_for_events_and_commands(org_wide):
    # authorizations[0].team_id is null: the org (E…) is the workspace of every message.
    ch1, ts1 = channel(), new_ts()
    await org_wide.event(
        app_mention(
            "<@UBOT> !prompt set --workspace Org rules.",
            user=ADMIN,
            channel=ch1,
            ts=ts1,
            team=WS1,
            user_team=WS1,
        ),
        team_id=WS1,
        enterprise_id=GRID,
        installation=ORG_WIDE,
    )
    assert "System prompt set for the workspace scope" in await org_wide.answer(ch1, ts1)
    assert await org_wide.prompts(
        workspace_scope("slack", GRID), workspace_scope("slack", WS1)
    ) == {workspace_scope("slack", GRID): "Org rules.", workspace_scope("slack", WS1): None}

    ch2, ts2 = channel(), new_ts()
    await org_wide.event(
        app_mention("<@UBOT> hi", user=GUEST, channel=ch2, ts=ts2, team=WS2, user_team=WS2),
        team_id=WS2,
        enterprise_id=GRID,
        installation=ORG_WIDE,
    )
    assert await org_wide.answer(ch2, ts2) == "Echo: hi"
    assert org_wide.system_prompt() == "Org rules."
    assert await org_wide.service.store.history(conversation_key("slack", GRID, ch2, ts2))

    shown = await org_wide.command(
        "prompt", user=GUEST, channel=ch2, team=WS2, enterprise_id=GRID, org_install=True
    )
    assert "from the workspace scope" in shown and "Org rules." in shown


# -- through `threadwise serve` --------------------------------------------------------------


@pytest.mark.e2e
async def test_serve_applies_a_prompt_set_from_a_shared_channel_to_the_installation(
    redis_url, key_prefix, model
):
    async with FakeSlack(users=USERS) as slack:
        env = {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_SIGNING_SECRET": SECRET,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "test-key",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": key_prefix,
            "BOT_ADMINS": ADMINS,
            "LLM_MAX_RETRIES": "0",
        }
        async with ServeProcess(env) as svc, aiohttp.ClientSession() as http:

            async def send(event: dict, **envelope: Any) -> None:
                body = json.dumps(event_callback(event, **envelope))
                url = svc.url + "/slack/events"
                async with http.post(url, data=body, headers=signed_headers(body)) as r:
                    assert r.status == 200

            async def reply(ch: str, ts: str) -> str:
                await slack.wait_for(lambda s: any(not m.streaming for m in s.thread(ch, ts)), 20)
                return "\n".join(slack.thread_texts(ch, ts))

            connect = {"team_id": PARTNER, "installation": {"team_id": INSTALLED}, "shared": True}
            ch, ts = channel(), new_ts()
            text = "<@UBOT> !prompt set --workspace Speak plainly."
            await send(shared_mention(text, user=PARTNER_ADMIN, ch=ch, ts=ts), **connect)
            assert "workspace scope" in await reply(ch, ts)

            # Another shared channel, another partner user: the installation's prompt applies.
            ch2, ts2 = channel(), new_ts()
            await send(shared_mention("<@UBOT> hi", user=GUEST, ch=ch2, ts=ts2), **connect)
            assert await reply(ch2, ts2) == "Echo: hi"
            assert model.last_messages()[0] == {"role": "system", "content": "Speak plainly."}

            # And the installation's own slash command, from its own workspace, shows it.
            fields = slash_command("prompt", response_url=slack.response_url(), user=ADMIN)
            body = form(fields)
            headers = signed_headers(body, content_type="application/x-www-form-urlencoded")
            async with http.post(svc.url + "/slack/events", data=body, headers=headers) as r:
                assert r.status == 200
            await slack.wait_for(lambda s: len(s.responses) >= 1, 20)
            assert "from the workspace scope" in slack.responses[0]["text"]
            assert "Speak plainly." in slack.responses[0]["text"]
