"""Test-only start-up hook for a `threadwise serve` child: Bot Framework keys from a local JWKS.

Python imports this at start-up because its folder is put on the child's PYTHONPATH by the
security tests (never in production, never in the parent test process). It makes the same
patches tests/unit/test_teams_auth.py makes in-process:

- the Agents SDK's key-set URLs point at the test's `LocalIssuer`: the Bot Framework issuer's
  entry, and the Entra (login.microsoftonline.com) key set of the app's tenant, so tokens of
  both kinds are signed locally; token validation itself stays the SDK's own;
- outgoing connector calls get a locally minted token instead of one from Entra ID;
- the SDK's outbound host check also admits plain-http loopback URLs, where the fake connector
  listens (the Bot Framework hosts it admits otherwise are unchanged, so a foreign host is still
  refused).
"""

import ipaddress
import os

_JWKS_URL = os.environ.get("THREADWISE_TEST_JWKS_URL")

if _JWKS_URL:
    from microsoft_agents.authentication.msal import MsalAuth
    from microsoft_agents.hosting.core import OutboundHostValidator
    from microsoft_agents.hosting.core.authorization import _entra_issuers
    from microsoft_agents.hosting.core.authorization.jwt import jwt_token_validator
    from yarl import URL

    _entra_issuers.BOTFRAMEWORK_JWKS_URIS["https://api.botframework.com"] = _JWKS_URL

    _sdk_jwks_uri = jwt_token_validator._build_jwks_uri

    def _local_jwks_uri(iss, root_config, routing_config):
        uri = _sdk_jwks_uri(iss, root_config, routing_config)
        return _JWKS_URL if uri.startswith("https://login.microsoftonline.com/") else uri

    jwt_token_validator._build_jwks_uri = _local_jwks_uri

    _OUTGOING = os.environ.get("THREADWISE_TEST_OUTGOING_TOKEN", "")

    async def _local_token(self, resource_url, scopes, force_refresh=False):
        return _OUTGOING

    MsalAuth.get_access_token = _local_token

    _sdk_is_allowed = OutboundHostValidator.is_allowed

    def _loopback(host):
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host or "").is_loopback
        except ValueError:
            return False

    def _or_loopback(self, url):
        try:
            parsed = URL(str(url))
        except ValueError:
            return False
        if parsed.scheme == "http" and _loopback(parsed.host):
            return True
        return _sdk_is_allowed(self, url)

    OutboundHostValidator.is_allowed = _or_loopback
