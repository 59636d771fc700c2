"""Bot Framework authentication on POST /api/messages: real RS256 tokens from a local key set.

Only a request with a valid Bot Framework token gets in; everything else is a 401 (never a 500)
and reaches neither the responder nor the connector.

The Agents SDK builds the Bot Framework key-set URL itself (`BOTFRAMEWORK_JWKS_URIS` maps the
issuer `https://api.botframework.com` to `https://login.botframework.com/v1/.well-known/keys`).
The one patch here replaces that single dictionary entry with the local `LocalIssuer` server
for the duration of a test; validation itself (signature, audience, issuer, expiry) is the SDK's
`JwtTokenValidator`, unpatched. Outgoing replies need an Entra token, which MSAL would fetch from
login.microsoftonline.com: `MsalAuth.get_access_token` is patched to hand out a locally minted
one, so the test can check the reply was sent with it. The fake connector listens on loopback,
where the bot never sends its token: `allow_loopback_service_urls` lets it, for these tests only.
"""

from __future__ import annotations

import asyncio

import pytest
from microsoft_agents.authentication.msal import MsalAuth
from microsoft_agents.hosting.core import AuthTypes
from microsoft_agents.hosting.core.authorization import _entra_issuers

from adapters.teams import CredentialsError, verify_credentials
from adapters.teams.auth import auth_configuration, normalize_app_type
from bot.metrics import Metrics
from tests.support.fakes.fake_connector import FakeConnector, allow_loopback_service_urls
from tests.support.fakes.jwks import BOT_FRAMEWORK_ISSUER, LocalIssuer
from tests.support.fixtures.teams.harness import APP_ID, RecordingHandler, load, teams_server


@pytest.fixture
async def issuer(monkeypatch):
    async with LocalIssuer() as local:
        # The narrowest patch: the SDK's Bot Framework issuer → key-set URL entry.
        monkeypatch.setitem(
            _entra_issuers.BOTFRAMEWORK_JWKS_URIS, BOT_FRAMEWORK_ISSUER, local.jwks_url
        )

        async def local_entra_token(self, resource_url, scopes, force_refresh=False):
            assert resource_url == "https://api.botframework.com"
            return local.outgoing_token(self.configuration.CLIENT_ID)

        monkeypatch.setattr(MsalAuth, "get_access_token", local_entra_token)
        allow_loopback_service_urls(monkeypatch)
        yield local


@pytest.fixture
async def connector():
    async with FakeConnector() as fake:
        yield fake


async def answer(msg, reply):
    await reply.send("authenticated answer")


async def post(client, activity, token: str | None = None, *, header: str | None = None):
    headers = {}
    if header is not None:
        headers["Authorization"] = header
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await client.post("/api/messages", json=activity, headers=headers)


def secure(handler, metrics=None):
    return teams_server(
        handler,
        app_id=APP_ID,
        app_password="not-a-real-secret",
        app_type="MultiTenant",
        allow_anonymous=False,
        metrics=metrics,
    )


async def test_valid_bot_framework_token_is_accepted_and_answered(issuer, connector):
    handler = RecordingHandler(answer)
    activity = load("channel_mention", service_url=connector.url)
    async with secure(handler) as (client, _):
        token = issuer.token(aud=APP_ID, service_url=connector.url)
        resp = await post(client, activity, token)
        assert resp.status == 200
        await handler.drain()
    assert len(handler.messages) == 1
    [reply] = connector.messages()
    assert reply.text == "authenticated answer"
    # The reply went out with the bot's own (Entra) token, not the one it received.
    assert reply.authorization is not None and reply.authorization.startswith("Bearer ")
    assert reply.authorization != f"Bearer {token}"


BAD_TOKENS = {
    "wrong-audience": lambda i, url: i.token(aud="another-bots-app-id", service_url=url),
    "wrong-issuer": lambda i, url: i.token(aud=APP_ID, service_url=url, iss="https://evil.test"),
    "expired": lambda i, url: i.expired_token(aud=APP_ID, service_url=url),
    "not-yet-valid": lambda i, url: i.token(aud=APP_ID, service_url=url, issued_ago=-1200),
    "bad-signature": lambda i, url: i.foreign_token(aud=APP_ID, service_url=url),
    "alg-none": lambda i, url: i.unsigned_token(aud=APP_ID, service_url=url),
    "no-key-id": lambda i, url: i.token(aud=APP_ID, service_url=url, kid=None),
    "unknown-key-id": lambda i, url: i.token(aud=APP_ID, service_url=url, kid="unknown"),
    "hs256": lambda i, url: i.token(
        aud=APP_ID, service_url=url, key="a-shared-secret-long-enough-for-hs256!", alg="HS256"
    ),
    "other-service-url": lambda i, url: i.token(aud=APP_ID, service_url="https://attacker.test/"),
    "garbage": lambda i, url: "garbage",
    "three-garbage-parts": lambda i, url: "a.b.c",
}


@pytest.mark.parametrize("make_token", list(BAD_TOKENS.values()), ids=list(BAD_TOKENS))
async def test_invalid_token_is_401_and_reaches_nobody(issuer, connector, make_token):
    handler = RecordingHandler(answer)
    metrics = Metrics()
    async with secure(handler, metrics) as (client, _):
        token = make_token(issuer, connector.url)
        resp = await post(client, load("channel_mention", service_url=connector.url), token)
        assert resp.status == 401
        assert resp.headers.get("WWW-Authenticate") == "Bearer"
        await asyncio.sleep(0.05)
    assert handler.messages == []
    assert connector.activities == []
    assert metrics.errors.labels("teams_auth")._value.get() == 1


@pytest.mark.parametrize(
    "header",
    [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "bearer a b", "Token abc"],
    ids=["missing", "basic", "bearer-alone", "bearer-blank", "two-tokens", "other-scheme"],
)
async def test_missing_or_malformed_authorization_header_is_401(issuer, connector, header):
    handler = RecordingHandler(answer)
    async with secure(handler) as (client, _):
        resp = await post(
            client, load("personal_message", service_url=connector.url), header=header
        )
        assert resp.status == 401
    assert handler.messages == []


async def test_unauthenticated_garbage_body_is_401_not_400(issuer):
    handler = RecordingHandler(answer)
    async with secure(handler) as (client, _):
        resp = await client.post("/api/messages", data=b"\x00not json")
        assert resp.status == 401


async def test_authenticated_garbage_body_is_400(issuer, connector):
    handler = RecordingHandler(answer)
    async with secure(handler) as (client, _):
        token = issuer.token(aud=APP_ID, service_url=connector.url)
        resp = await client.post(
            "/api/messages", data=b"{oops", headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status == 400


async def test_key_set_outage_is_401_not_500(issuer, connector, monkeypatch):
    monkeypatch.setitem(
        _entra_issuers.BOTFRAMEWORK_JWKS_URIS,
        BOT_FRAMEWORK_ISSUER,
        "http://127.0.0.1:9/v1/.well-known/keys",
    )
    handler = RecordingHandler(answer)
    async with secure(handler) as (client, _):
        token = issuer.token(aud=APP_ID, service_url=connector.url)
        resp = await post(client, load("personal_message", service_url=connector.url), token)
        assert resp.status == 401


async def test_anonymous_mode_needs_no_token(connector):
    handler = RecordingHandler(answer)
    async with teams_server(handler) as (client, _):
        resp = await post(client, load("personal_message", service_url=connector.url))
        assert resp.status == 200
        await handler.drain()
    [reply] = connector.messages()
    assert reply.authorization is None


# -- settings → the SDK's connection settings


def test_multitenant_app_uses_client_secret_against_the_botframework_tenant():
    config = auth_configuration(
        app_id=APP_ID, app_password="pw", tenant_id=None, app_type="MultiTenant"
    )
    assert config.AUTH_TYPE == AuthTypes.client_secret
    assert config.CLIENT_ID == APP_ID and config.CLIENT_SECRET == "pw"
    assert config.TENANT_ID == "botframework.com"
    assert config.VALIDATE_ISSUER and not config.ANONYMOUS_ALLOWED


def test_singletenant_app_uses_its_own_tenant():
    config = auth_configuration(
        app_id=APP_ID, app_password="pw", tenant_id="contoso-tenant", app_type="singletenant"
    )
    assert config.AUTH_TYPE == AuthTypes.client_secret and config.TENANT_ID == "contoso-tenant"


def test_user_assigned_msi_uses_managed_identity_without_a_secret():
    config = auth_configuration(
        app_id=APP_ID, app_password=None, tenant_id="contoso-tenant", app_type="UserAssignedMSI"
    )
    assert config.AUTH_TYPE == AuthTypes.user_managed_identity
    assert config.CLIENT_ID == APP_ID and config.CLIENT_SECRET is None


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"app_password": None, "tenant_id": None, "app_type": "MultiTenant"}, "PASSWORD"),
        ({"app_password": "pw", "tenant_id": None, "app_type": "SingleTenant"}, "TENANT_ID"),
        ({"app_password": "pw", "tenant_id": None, "app_type": "Galactic"}, "APP_TYPE"),
    ],
)
def test_incomplete_settings_are_refused_naming_the_setting(kwargs, setting):
    with pytest.raises(ValueError, match=setting):
        auth_configuration(app_id=APP_ID, **kwargs)


def test_app_type_names_are_case_insensitive():
    assert normalize_app_type("userassignedmsi") == "UserAssignedMSI"
    assert normalize_app_type(None) == "MultiTenant"


# -- `threadwise doctor`'s credential check


async def test_verify_credentials_gets_a_bot_framework_token(monkeypatch):
    seen = {}

    async def token(self, resource_url, scopes, force_refresh=False):
        seen.update(resource=resource_url, scopes=scopes, tenant=self.configuration.TENANT_ID)
        return "eyJ.token"

    monkeypatch.setattr(MsalAuth, "get_access_token", token)
    await verify_credentials(
        app_id=APP_ID, app_password="pw", tenant_id="contoso", app_type="SingleTenant"
    )
    assert seen == {
        "resource": "https://api.botframework.com",
        "scopes": ["https://api.botframework.com/.default"],
        "tenant": "contoso",
    }


async def test_verify_credentials_names_the_entra_error_without_the_secret(monkeypatch):
    async def refused(self, resource_url, scopes, force_refresh=False):
        raise ValueError(
            "Failed to acquire token. {'error': 'invalid_client', 'error_description': "
            "'AADSTS7000215: Invalid client secret provided.'}"
        )

    monkeypatch.setattr(MsalAuth, "get_access_token", refused)
    with pytest.raises(CredentialsError, match="AADSTS7000215") as info:
        await verify_credentials(
            app_id=APP_ID, app_password="s3cret-value", tenant_id=None, app_type="MultiTenant"
        )
    assert "s3cret-value" not in str(info.value)


async def test_verify_credentials_gives_up_after_the_timeout(monkeypatch):
    async def hangs(self, resource_url, scopes, force_refresh=False):
        await asyncio.sleep(10)

    monkeypatch.setattr(MsalAuth, "get_access_token", hangs)
    with pytest.raises(CredentialsError, match="within"):
        await verify_credentials(
            app_id=APP_ID, app_password="pw", tenant_id=None, app_type="MultiTenant", timeout=0.1
        )
