"""Bot Framework authentication for Teams: settings → Agents SDK connection, and request checks.

Incoming requests are checked with the SDK's `JwtTokenValidator` (RS256 signature against the Bot
Framework keys, audience = app id, issuer allow-list). Around it we add what the SDK leaves to the
host: every failure (missing or malformed header, garbage, `alg: none`, a token with no `kid`, a
key-set fetch error) becomes a 401, never a 500; the issuer is checked *before* any key fetch so a
stranger's token cannot make us call out; and the token's `serviceurl` claim must name the same
host as the activity's `serviceUrl`. (The SDK checks that only inside its own HTTP adapter's
`process_request`, which the adapter does not use, and there only with its host validator on:
off, a mismatch is just logged.)

A token without that claim is not from a channel: the issuer allow-list also admits the app
tenant's Entra issuers, so any app registration or managed identity of the tenant can mint one
with the bot's app id as audience. Such a token is accepted only from an app id listed in
TEAMS_ALLOWED_CALLERS (agent-to-agent); without the list, no one.

Outgoing calls get their tokens from the SDK's `MsalConnectionManager` (client secret for
MultiTenant and SingleTenant bots, user-assigned managed identity for UserAssignedMSI).
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import urlsplit

import jwt
from microsoft_agents.authentication.msal import MsalConnectionManager
from microsoft_agents.hosting.core import (
    AgentAuthConfiguration,
    AuthenticationConstants,
    AuthTypes,
    ClaimsIdentity,
)
from microsoft_agents.hosting.core.authorization.jwt import JwtTokenValidator

log = logging.getLogger("threadwise.teams")

APP_TYPES = {
    "multitenant": "MultiTenant",
    "singletenant": "SingleTenant",
    "userassignedmsi": "UserAssignedMSI",
}

# botbuilder's MultiTenant bots took their tokens from the `botframework.com` tenant; the SDK's
# MSAL provider needs a tenant, so a MultiTenant app gets that one.
MULTITENANT_AUTHORITY_TENANT = "botframework.com"

# Bot Framework tokens carry a `serviceurl` claim; the SDK calls it this.
SERVICE_URL_CLAIM = "serviceurl"
# The calling app's id: `azp` in v2.0 Entra tokens, `appid` in v1.0 ones.
CALLER_CLAIMS = ("azp", "appid")


class Unauthorized(Exception):
    """The request has no valid Bot Framework token; the reason is for logs, never the caller."""


def normalize_app_type(app_type: str | None) -> str:
    key = (app_type or "MultiTenant").replace("_", "").replace("-", "").lower()
    if key not in APP_TYPES:
        raise ValueError(
            f"MICROSOFT_APP_TYPE: {app_type!r} is not one of MultiTenant, SingleTenant, "
            "UserAssignedMSI"
        )
    return APP_TYPES[key]


def auth_configuration(
    *, app_id: str, app_password: str | None, tenant_id: str | None, app_type: str
) -> AgentAuthConfiguration:
    """Threadwise's MICROSOFT_APP_* settings as the SDK's SERVICE_CONNECTION settings."""
    kind = normalize_app_type(app_type)
    if kind == "UserAssignedMSI":
        return AgentAuthConfiguration(
            auth_type=AuthTypes.user_managed_identity,
            client_id=app_id,
            tenant_id=tenant_id,
            validate_issuer=True,
            anonymous_allowed=False,
        )
    if not app_password:
        raise ValueError(f"MICROSOFT_APP_PASSWORD: a {kind} app needs its client secret")
    if kind == "SingleTenant":
        if not tenant_id:
            raise ValueError("MICROSOFT_APP_TENANT_ID: a SingleTenant app needs its tenant id")
        tenant = tenant_id
    else:
        tenant = MULTITENANT_AUTHORITY_TENANT
    return AgentAuthConfiguration(
        auth_type=AuthTypes.client_secret,
        client_id=app_id,
        client_secret=app_password,
        tenant_id=tenant,
        validate_issuer=True,
        anonymous_allowed=False,
    )


def connection_manager(config: AgentAuthConfiguration | None) -> MsalConnectionManager:
    """The SDK's connection manager (token source for outgoing calls).

    In anonymous mode it is never asked for a token (outgoing calls go unauthenticated), but the
    SDK's client factory still wants one, so it gets an empty configuration.
    """
    return MsalConnectionManager(
        connections_configurations={
            "SERVICE_CONNECTION": config or AgentAuthConfiguration(anonymous_allowed=True)
        }
    )


def _allowed_issuers(config: AgentAuthConfiguration) -> set[str]:
    # The connection's issuers as the SDK computes them (Bot Framework's, and the app tenant's
    # Entra issuers); the SDK's own VALIDATE_ISSUER check, run afterwards, accepts a superset.
    issuers = [*config.ISSUERS, AuthenticationConstants.AGENTS_SDK_TOKEN_ISSUER]
    return {issuer.lower() for issuer in issuers}


def _same_host(a: str, b: str) -> bool:
    try:
        ha, hb = urlsplit(a).hostname, urlsplit(b).hostname
    except ValueError:
        return False
    return bool(ha) and bool(hb) and ha.casefold() == hb.casefold()


class RequestAuthenticator:
    """Checks `Authorization: Bearer <jwt>` headers on POST /api/messages."""

    def __init__(
        self, config: AgentAuthConfiguration, allowed_callers: frozenset[str] = frozenset()
    ) -> None:
        self.config = config
        self.allowed_callers = frozenset(c.lower() for c in allowed_callers)
        self._validator = JwtTokenValidator(self.config)
        self._issuers = _allowed_issuers(self.config)

    async def authenticate(self, header: str | None) -> ClaimsIdentity:
        if not header:
            raise Unauthorized("no Authorization header")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            raise Unauthorized("malformed Authorization header")
        # Cheap checks on the unverified token first: they cost no key fetch, and they turn the
        # shapes the SDK would trip over (no `kid` → KeyError) into plain rejections.
        try:
            header_fields = jwt.get_unverified_header(token)
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"undecodable token ({type(exc).__name__})") from None
        if header_fields.get("alg") != "RS256":
            raise Unauthorized("token algorithm is not RS256")
        if not isinstance(header_fields.get("kid"), str):
            raise Unauthorized("token has no key id")
        iss = claims.get("iss")
        if not isinstance(iss, str) or iss.lower() not in self._issuers:
            raise Unauthorized("token issuer not accepted")
        try:
            return await self._validator.validate_token(token)
        except Exception as exc:  # PyJWTError, ValueError, key-set fetch failures, anything
            raise Unauthorized(f"token rejected ({type(exc).__name__})") from None

    def check_service_url(self, identity: ClaimsIdentity, service_url: str | None) -> None:
        """The activity must come from the service its token was issued for.

        A token with no `serviceurl` claim passes only when its caller is in
        TEAMS_ALLOWED_CALLERS (the module docstring says why).
        """
        claim = identity.get_claim_value(SERVICE_URL_CLAIM)
        if claim is None:
            caller = caller_of(identity)
            if caller is None or caller.lower() not in self.allowed_callers:
                raise Unauthorized(
                    "token has no serviceurl claim and its app id is not in TEAMS_ALLOWED_CALLERS"
                )
            return
        if not service_url or not isinstance(claim, str) or not _same_host(claim, service_url):
            raise Unauthorized("serviceUrl does not match the token's serviceurl claim")


def caller_of(identity: ClaimsIdentity) -> str | None:
    """The app id that asked for the token (None when the token names none)."""
    for name in CALLER_CLAIMS:
        value = identity.get_claim_value(name)
        if isinstance(value, str) and value:
            return value
    return None


class CredentialsError(Exception):
    """The bot's Microsoft Entra credentials do not yield a token (one line, no secrets).

    `unreachable`: Entra ID was not reached at all (network, DNS, proxy), so nothing is known
    about the credentials themselves.
    """

    def __init__(self, message: str, *, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


async def verify_credentials(
    *,
    app_id: str,
    app_password: str | None,
    tenant_id: str | None,
    app_type: str,
    timeout: float = 20.0,
) -> None:
    """Get a Bot Framework token the way replies will (for `threadwise doctor`).

    Raises `CredentialsError` naming what failed, e.g. `AADSTS7000215` (wrong client secret),
    `AADSTS700016` (app id not found in the tenant), or a network error.
    """
    config = auth_configuration(
        app_id=app_id, app_password=app_password, tenant_id=tenant_id, app_type=app_type
    )
    provider = connection_manager(config).get_default_connection()
    scope = AuthenticationConstants.AGENTS_SDK_SCOPE
    try:
        async with asyncio.timeout(timeout):
            token = await provider.get_access_token(scope, [scope + "/.default"])
    except TimeoutError:
        raise CredentialsError(
            f"no answer from Microsoft Entra ID within {timeout:.0f} s", unreachable=True
        ) from None
    except OSError as exc:  # requests' ConnectionError, DNS, TLS: Entra ID never answered
        raise CredentialsError(
            f"could not reach Microsoft Entra ID ({type(exc).__name__})", unreachable=True
        ) from None
    except Exception as exc:
        codes = re.findall(r"AADSTS\d+", str(exc))
        reason = codes[0] if codes else type(exc).__name__
        raise CredentialsError(f"Microsoft Entra ID refused the credentials ({reason})") from None
    if not token:
        raise CredentialsError("Microsoft Entra ID returned no token")
