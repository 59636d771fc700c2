"""Test-only start-up hook for a `threadwise serve` child: Bot Framework keys from a local JWKS.

Python imports this at start-up because its folder is put on the child's PYTHONPATH by the
security tests (never in production, never in the parent test process). It makes the same one
patch tests/test_teams_auth.py makes in-process: the Agents SDK's Bot Framework issuer → key-set
URL entry points at the test's `LocalIssuer`, so token validation itself stays the SDK's own;
outgoing connector calls get a locally minted token instead of one from Entra ID.
"""

import os

_JWKS_URL = os.environ.get("THREADWISE_TEST_JWKS_URL")

if _JWKS_URL:
    from microsoft_agents.authentication.msal import MsalAuth
    from microsoft_agents.hosting.core.authorization import _entra_issuers

    _entra_issuers.BOTFRAMEWORK_JWKS_URIS["https://api.botframework.com"] = _JWKS_URL
    _OUTGOING = os.environ.get("THREADWISE_TEST_OUTGOING_TOKEN", "")

    async def _local_token(self, resource_url, scopes, force_refresh=False):
        return _OUTGOING

    MsalAuth.get_access_token = _local_token
