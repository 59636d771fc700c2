"""Teams trust boundaries through a running `threadwise serve` with real token checks.

The service is a SingleTenant app (as `azd up` deploys) whose tokens are checked by the Agents
SDK against local key sets (tests/support/local_auth/sitecustomize.py routes both the Bot
Framework keys and the tenant's Entra keys to the fake connector's `LocalIssuer`). So a token
the tenant's Entra ID would issue to any of its app registrations or managed identities, with
the bot's app id as audience and no `serviceurl` claim, is signed here just as one from Bot
Framework is, and the only thing between it and the bot is Threadwise's own rule:

- without a `serviceurl` claim only an app id in TEAMS_ALLOWED_CALLERS gets in (401 otherwise),
- with one, it must name the activity's `serviceUrl` (401),
- the bot's token goes only to Bot Framework service hosts over https (403 otherwise, before any
  outbound call; the test's loopback connector is admitted by the test-only patch),
- only `channelId`s in TEAMS_ALLOWED_CHANNELS (default `msteams`) are served (403),
- text the bot posts never mentions anyone: `<at>` markup from the model, or echoed from a
  command, is broken and no mention entity is attached.
"""

from __future__ import annotations

import asyncio
import re

import jwt
import pytest
import pytest_asyncio

from tests.reliability.conftest import new_stack
from tests.support.fakes.fake_openai import Reply
from tests.support.fixtures.teams.harness import APP_ID, TENANT
from tests.support.stack import (
    SLACK_ADMIN,
    TEAMS_ADMIN,
    channel,
    figure,
    mention,
    slack_thread,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.security, pytest.mark.asyncio(loop_scope="module")]

CALLER = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"  # an agent allowed to call without the claim
STRANGER = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"  # another app registration of the tenant
TENANT_V1 = f"https://sts.windows.net/{TENANT}/"
TENANT_V2 = f"https://login.microsoftonline.com/{TENANT}/v2.0"
RAW_AT = re.compile(r"</?at(?=[\s>/])", re.IGNORECASE)  # mention markup Teams would act on


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def trusted(model, slack, connector, redis_url):
    st = new_stack(model, slack, connector, redis_url)
    await st.start(
        MICROSOFT_APP_TYPE="SingleTenant",
        MICROSOFT_APP_TENANT_ID=TENANT,
        TEAMS_ALLOWED_CALLERS=f"{CALLER.upper()}, 0000",
    )
    yield st
    await st.close()


@pytest_asyncio.fixture(loop_scope="module")
async def st(trusted):
    trusted.reset()
    yield trusted
    trusted.reset()


def tenant_token(connector, *, caller: str, v2: bool = True, **claims) -> str:
    """What the tenant's Entra ID issues an app asking for a token for the bot: no serviceurl."""
    if v2:
        claims.update(iss=TENANT_V2, azp=caller)
    else:
        claims.update(iss=TENANT_V1, appid=caller)
    token = connector.issuer.token(aud=APP_ID, tid=TENANT, **claims)
    return f"Bearer {token}"


def bot_framework_token(connector, service_url: str) -> str:
    return f"Bearer {connector.issuer.token(aud=APP_ID, service_url=service_url)}"


def rejections(st, status: int) -> int:
    return sum(f"rejected ({status})" in line for line in st.svc.lines)


def outbound_attempts(st, since: int) -> list[str]:
    """Log lines a reply or welcome that tried to leave would have written."""
    words = ("not delivered", "connector client", "not posting to", "streaming stopped")
    return [line for line in st.svc.lines[since:] if any(w in line for w in words)]


async def nothing_happened(st, logged_before: int) -> None:
    await asyncio.sleep(0.3)
    assert st.connector.activities == [], "the bot posted"
    assert st.model.chat_requests == [], "the model was asked"
    assert outbound_attempts(st, logged_before) == []
    prompts = await st.prompts()
    assert not any("pwned" in (v or "") for v in prompts.values()), prompts


# -- the serviceurl claim ---------------------------------------------------------------------


@pytest.mark.parametrize("v2", [True, False], ids=["v2-azp", "v1-appid"])
async def test_tenant_token_without_the_serviceurl_claim_is_401_and_posts_nothing(st, v2):
    """The hole of issue 12: any app of the tenant posing as the admin, replies to its host."""
    act = st.activity("personal_message", text="!prompt set --global pwned")
    assert act["from"]["aadObjectId"] == TEAMS_ADMIN
    before, logged = rejections(st, 401), len(st.svc.lines)
    header = tenant_token(st.connector, caller=STRANGER, v2=v2)
    assert await st.teams(act, headers={"Authorization": header}) == 401
    await nothing_happened(st, logged)
    assert rejections(st, 401) == before + 1
    assert any("TEAMS_ALLOWED_CALLERS" in ln for ln in st.svc.lines[logged:])
    figure("attacks tried (Teams trust)")


async def test_tenant_token_naming_no_caller_is_401(st):
    act = st.activity("personal_message", text="who am I?")
    token = st.connector.issuer.token(aud=APP_ID, iss=TENANT_V2, tid=TENANT)
    assert await st.teams(act, headers={"Authorization": f"Bearer {token}"}) == 401
    await nothing_happened(st, len(st.svc.lines))


async def test_bot_framework_token_whose_claim_names_another_service_is_401(st):
    act = st.activity("personal_message", text="a question")
    header = bot_framework_token(st.connector, "https://smba.trafficmanager.net/amer/")
    assert await st.teams(act, headers={"Authorization": header}) == 401
    await nothing_happened(st, len(st.svc.lines))
    figure("attacks tried (Teams trust)")


@pytest.mark.parametrize("v2", [True, False], ids=["v2-azp", "v1-appid"])
async def test_allowed_caller_without_the_claim_is_answered(st, v2):
    st.model.script(Reply("Agent-to-agent answer."))
    act = st.activity("personal_message", text="a question from another agent")
    header = tenant_token(st.connector, caller=CALLER, v2=v2)
    assert await st.teams(act, headers={"Authorization": header}) == 200
    conv = act["conversation"]["id"]
    assert await teams_thread(st.connector, conv, 1) == ["Agent-to-agent answer."]
    posted = [a for a in st.connector.activities if a.conversation_id == conv]
    for a in posted:  # the reply went out with the bot's own token, not the caller's
        scheme, _, token = (a.authorization or "").partition(" ")
        assert scheme == "Bearer"
        assert jwt.decode(token, options={"verify_signature": False})["appid"] == APP_ID


# -- where the bot's token may go --------------------------------------------------------------

FOREIGN = [
    "https://attacker.example/",
    "https://smba.trafficmanager.net.attacker.example/amer/",
    "http://smba.trafficmanager.net/amer/",  # the right host, but the token in clear text
    "https://user@smba.trafficmanager.net/amer/",
    "https://10.0.0.7/",
]


@pytest.mark.parametrize("url", FOREIGN)
@pytest.mark.parametrize("kind", ["personal_message", "conversation_update_bot_added"])
async def test_foreign_service_url_with_a_valid_claim_for_it_is_refused_before_any_outbound_call(
    st, url, kind
):
    """A genuine token for a host the bot must not send its token to: 403, nothing leaves."""
    act = st.activity(kind, text="hello" if kind == "personal_message" else None)
    act["serviceUrl"] = url
    before, logged = rejections(st, 403), len(st.svc.lines)
    assert (
        await st.teams(act, headers={"Authorization": bot_framework_token(st.connector, url)})
        == 403
    )
    await nothing_happened(st, logged)
    assert rejections(st, 403) == before + 1
    figure("attacks tried (Teams trust)")


# -- channels -----------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["webchat", "directline", "emulator", "MSTEAMS-not"])
async def test_channel_other_than_teams_is_403_before_anything_else(st, channel):
    act = st.activity("personal_message", text="!prompt set --global pwned")
    act["channelId"] = channel
    act["from"] = {"id": TEAMS_ADMIN, "name": "Megan Bowen", "aadObjectId": TEAMS_ADMIN}
    before, logged = rejections(st, 403), len(st.svc.lines)
    assert await st.teams(act) == 403
    await nothing_happened(st, logged)
    assert rejections(st, 403) == before + 1
    figure("attacks tried (Teams trust)")


# -- what the bot posts ---------------------------------------------------------------------------


def assert_mentions_no_one(st, conversation_id: str) -> list[str]:
    posted = [a for a in st.connector.activities if a.conversation_id == conversation_id]
    assert posted
    for a in posted:
        assert RAW_AT.search(a.text) is None, a.text
        kinds = [e.get("type") for e in a.activity.get("entities") or [] if isinstance(e, dict)]
        assert "mention" not in kinds, a.activity
    return [a.text for a in posted]


@pytest.mark.parametrize("kind", ["personal_message", "group_chat_mention", "channel_mention"])
async def test_mention_markup_written_by_the_model_mentions_no_one(st, kind):
    text = "Ask <at>Alice</at> — or <AT id='0'>Megan Bowen</AT> — about it. " * 3
    st.model.script(Reply(text))
    st.model.configure(tokens_per_second=15)  # a 1:1 reply streams over ~3 s: several updates
    question = "who knows?" if kind == "personal_message" else "<at>Threadwise</at> who knows?"
    act = st.activity(kind, text=question)
    assert await st.teams(act) == 200
    conv = act["conversation"]["id"]
    [shown] = await teams_thread(st.connector, conv, 1)
    texts = assert_mentions_no_one(st, conv)
    assert "Alice" in shown and "Megan Bowen" in shown  # still readable as written
    assert shown.replace("\u2060", "").strip() == text.strip()
    if kind == "personal_message":
        assert len(texts) > 2, "the reply streamed"
    figure("attacks tried (Teams trust)")


async def test_command_echoing_user_text_mentions_no_one(st):
    """A prompt holding `<at>` (set from Slack, where Teams' mention mapping never ran) shown
    back by `!prompt` in Teams."""
    ch, at = channel(), ts()
    text = "<@UBOT> !prompt set --global Greet &lt;at&gt;Alice&lt;/at&gt; first"  # Slack's wire
    assert await st.send(mention(text, ch=ch, at=at, user=SLACK_ADMIN)) == 200
    [answer] = await slack_thread(st.slack, ch, at, 1, quiet=0)
    assert "set for the" in answer, answer
    try:
        act = st.activity("personal_message", text="!prompt")
        assert await st.teams(act) == 200
        conv = act["conversation"]["id"]
        [shown] = await teams_thread(st.connector, conv, 1)
        assert "Greet <at\u2060>Alice</at\u2060> first" in shown, shown
        assert_mentions_no_one(st, conv)
    finally:
        reset = mention("<@UBOT> !prompt reset --global", ch=ch, thread=at, user=SLACK_ADMIN)
        assert await st.send(reset) == 200
        await slack_thread(st.slack, ch, at, 2, quiet=0)
    assert st.model.chat_requests == []
