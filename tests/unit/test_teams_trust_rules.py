"""The Teams trust rules one by one (`adapters/teams/trust.py`, `auth.py`, serve's start-up).

Which service URLs may receive the bot's token, which hosts anonymous mode may bind to and post
to, which tokens without a `serviceurl` claim get in, and how `<at>` markup in the bot's own
text is broken. The same rules through a running service: tests/reliability/test_teams_trust.py
and tests/e2e/test_teams_trust_anonymous.py.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from microsoft_agents.activity import ConversationReference, StreamInfo
from microsoft_agents.hosting.core import ClaimsIdentity

from adapters.teams.auth import RequestAuthenticator, Unauthorized, auth_configuration
from adapters.teams.connector import Outbound, ServiceUrlRefused
from adapters.teams.reply import Destination
from adapters.teams.trust import (
    is_loopback_host,
    is_loopback_url,
    neutral_text,
    service_url_allowed,
)
from bot.cli import check_anonymous_teams
from bot.metrics import Metrics
from bot.settings import Settings, SettingsError
from tests.support.fixtures.teams.harness import APP_ID

# -- where the bot's token may go


@pytest.mark.parametrize(
    "url",
    [
        "https://smba.trafficmanager.net/amer/",
        "https://smba.trafficmanager.net/emea/",
        "https://SMBA.trafficmanager.net/teams/",
        "https://smba.infra.gcc.teams.microsoft.com/",
        "https://smba.infra.gov.teams.microsoft.us/",
        "https://directline.botframework.com/",
        "https://europe.webchat.botframework.com/",
    ],
)
def test_bot_framework_service_hosts_over_https_may_receive_the_token(url):
    assert service_url_allowed(url, anonymous=False)


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/",
        "http://smba.trafficmanager.net/amer/",  # clear text
        "https://smba.trafficmanager.net.attacker.example/",
        "https://attacker.example/smba.trafficmanager.net/",
        "https://evilbotframework.com/",
        "https://user:pw@smba.trafficmanager.net/amer/",
        "https://contoso.sharepoint.com/",  # in the SDK's list for downloads, not for posts
        "https://anyone.blob.core.windows.net/",
        "https://127.0.0.1/",
        "http://127.0.0.1:3978/",  # loopback: only anonymous mode, or a test's patch
        "https://10.0.0.7/",
        "https://[::1]/",
        "not a url",
        "",
    ],
)
def test_other_service_urls_never_receive_the_token(url):
    assert not service_url_allowed(url, anonymous=False)


class NeverFactory:
    """A connector client factory that must not be asked (it would fetch a token)."""

    asked = 0

    async def create_connector_client(self, *args, **kwargs):
        NeverFactory.asked += 1
        raise AssertionError("a connector client was made")


@pytest.mark.parametrize("anonymous", [False, True])
async def test_refused_service_url_gets_no_connector_client(anonymous, caplog):
    """The last line of defence: replies, welcomes and streams all get their client here."""
    metrics = Metrics()
    out = Outbound(NeverFactory(), app_id=None if anonymous else APP_ID, anonymous=anonymous,
                   metrics=metrics)  # type: ignore[arg-type]  # fmt: skip
    try:
        with pytest.raises(ServiceUrlRefused):
            await out.open("https://attacker.example/a?token=secret-in-the-query")
    finally:
        await out.aclose()
    assert NeverFactory.asked == 0
    assert metrics.errors.labels("teams_connector")._value.get() == 1
    [record] = [r for r in caplog.records if "not posting" in r.getMessage()]
    assert record.levelname == "WARNING"
    assert "attacker.example" in record.getMessage()
    assert "secret-in-the-query" not in record.getMessage()


# -- tokens without the serviceurl claim


def authenticator(callers: frozenset[str] = frozenset()) -> RequestAuthenticator:
    config = auth_configuration(
        app_id=APP_ID, app_password="pw", tenant_id=None, app_type="MultiTenant"
    )
    return RequestAuthenticator(config, callers)


@pytest.mark.parametrize(
    "claims",
    [{}, {"azp": "someone-else"}, {"appid": "someone-else"}, {"azp": ""}, {"appid": 7}],
    ids=["no-caller", "azp", "appid", "empty", "not-a-string"],
)
def test_token_without_the_claim_from_a_caller_not_listed_is_refused(claims):
    identity = ClaimsIdentity({"aud": APP_ID, **claims}, True)
    with pytest.raises(Unauthorized, match="TEAMS_ALLOWED_CALLERS"):
        authenticator(frozenset({"agent-app"})).check_service_url(identity, "https://x/")
    with pytest.raises(Unauthorized):
        authenticator().check_service_url(identity, "https://x/")  # the default: nobody


@pytest.mark.parametrize("claim", ["azp", "appid"])
def test_token_without_the_claim_from_an_allowed_caller_passes(claim):
    identity = ClaimsIdentity({"aud": APP_ID, claim: "Agent-App"}, True)
    authenticator(frozenset({"agent-app"})).check_service_url(identity, "https://x/")


def test_token_with_the_claim_must_name_the_activitys_service():
    identity = ClaimsIdentity({"serviceurl": "https://smba.trafficmanager.net/amer/"}, True)
    check = authenticator(frozenset({"agent-app"})).check_service_url
    check(identity, "https://SMBA.trafficmanager.net/emea/")
    for other in ("https://attacker.example/", "", None):
        with pytest.raises(Unauthorized, match="serviceurl claim"):
            check(identity, other)


# -- what the bot posts


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("ask <at>Alice</at>", "ask <at\u2060>Alice</at\u2060>"),
        ('<AT id="0">Bob</aT >', '<AT\u2060 id="0">Bob</aT\u2060 >'),
        ("<at/>", "<at\u2060/>"),
        ("<atom> <attr> a<b <a href='x'>", "<atom> <attr> a<b <a href='x'>"),
        ("no markup", "no markup"),
        ("ends in <at", "ends in <at"),
    ],
)
def test_mention_tags_are_broken_and_nothing_else_changes(text, shown):
    assert neutral_text(text) == shown
    assert neutral_text(text).replace("\u2060", "") == text


@given(st.text(alphabet="<>/atAT x\u2060", max_size=60))
def test_neutral_text_extends_as_the_text_extends(text):
    """A stream update must extend the last one: neutralising a prefix gives a prefix."""
    whole = neutral_text(text)
    for i in range(len(text) + 1):
        assert whole.startswith(neutral_text(text[:i]))
    assert neutral_text(whole) == whole  # and it is done once for all


def test_neutral_text_is_linear_on_hostile_input():
    hostile = ("<at" * 20_000) + ("</at " * 20_000) + "<" * 40_000
    started = time.perf_counter()
    neutral_text(hostile)
    # Linear: a fraction of a second here; quadratic on 160,000 characters would be minutes.
    assert time.perf_counter() - started < 10


def test_every_activity_the_bot_posts_is_neutralised_and_has_no_mention():
    dest = Destination(
        ConversationReference(
            conversation={"id": "a:1"}, service_url="https://smba.trafficmanager.net/amer/"
        ),
        "1",
    )
    mention = {"type": "mention", "text": "<at>Alice</at>", "mentioned": {"id": "29:x"}}
    message = dest.message("hi <at>Alice</at>", [mention, StreamInfo(stream_type="final")])
    typing = dest.activity("typing", text="<at>Alice</at>", entities=[mention])
    for activity in (message, typing):
        assert "<at>" not in activity.text
        assert [getattr(e, "type", None) for e in activity.entities or []] in ([], ["streaminfo"])


# -- anonymous mode: where it may run


def settings(**kw) -> Settings:
    return Settings(
        **{"openai_base_url": "http://127.0.0.1:9/v1/", "azure_openai_deployment": "d", **kw}
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_anonymous_mode_on_loopback_alone_may_start(host):
    check_anonymous_teams(settings(teams_allow_anonymous=True, host=host))


def test_with_an_app_id_teams_authenticates_and_any_host_and_slack_are_fine():
    check_anonymous_teams(
        settings(
            teams_allow_anonymous=True,
            microsoft_app_id="9b2e7c1a-4d3f-4e8a-b6c5-1f0e2d3c4b5a",
            slack_bot_token="xoxb-x",
            host="0.0.0.0",
        )
    )
    with pytest.raises(SettingsError, match="Slack"):
        check_anonymous_teams(settings(teams_allow_anonymous=True, slack_bot_token="xoxb-x"))


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("10.0.0.1", False),
        ("evil.localhost", False),
        ("localhost.attacker.example", False),
    ],
)
def test_loopback_hosts_are_the_ones_on_this_machine_only(host, loopback):
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:3978/", True),
        ("https://localhost/_connector", True),
        ("http://[::1]:56150/", True),
        ("http://user:pw@127.0.0.1/", False),
        ("ftp://127.0.0.1/", False),
        ("https://smba.trafficmanager.net/amer/", False),
        ("http://127.0.0.1.nip.io/", False),
        ("not a url", False),
    ],
)
def test_anonymous_mode_posts_to_loopback_service_urls_only(url, allowed):
    assert is_loopback_url(url) is allowed
    assert service_url_allowed(url, anonymous=True) is allowed
