"""Attack 9: authentication — forged, stale and broken credentials get 401 and cost nothing.

Slack: a request needs Slack's v0 signature over the exact body and a timestamp within 5
minutes. Teams (a service with an app id): a Bot Framework RS256 token with the app id as
audience, the Bot Framework issuer, a key from the Bot Framework key set, not expired, and a
`serviceurl` claim naming the activity's service. Each forgery is a 401 that reaches neither
the model nor Slack nor the connector; a genuine request still works.

The Teams service runs with a local key set (tests/support/local_auth/sitecustomize.py makes
the SDK fetch the Bot Framework keys from `LocalIssuer`; validation is the SDK's, unpatched).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization

from tests.reliability.conftest import new_stack
from tests.support.fakes.fake_openai import Reply
from tests.support.fakes.fake_slack import event_callback, form, signed_headers, slash_command
from tests.support.fakes.jwks import LocalIssuer
from tests.support.fixtures.teams.harness import APP_ID
from tests.support.helpers import ROOT
from tests.support.stack import (
    HERE,
    SECRET,
    channel,
    figure,
    mention,
    slack_thread,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.security, pytest.mark.asyncio(loop_scope="module")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def issuer():
    async with LocalIssuer() as local:
        yield local


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def teams_svc(model, slack, connector, redis_url, issuer):
    """A service with a Teams app id: every request needs a Bot Framework token."""
    st = new_stack(model, slack, connector, redis_url)
    svc = await st.start(
        TEAMS_ALLOW_ANONYMOUS="false",
        MICROSOFT_APP_ID=APP_ID,
        MICROSOFT_APP_PASSWORD="app-password-for-tests-only",
        PYTHONPATH=f"{HERE / 'local_auth'}:{ROOT}",
        THREADWISE_TEST_JWKS_URL=issuer.jwks_url,
        THREADWISE_TEST_OUTGOING_TOKEN=issuer.outgoing_token(APP_ID),
    )
    yield st, svc
    await st.close()


def nothing_happened(stack) -> None:
    assert stack.model.chat_requests == [], "a forged request reached the model"
    assert stack.slack.methods() == [], "a forged request made the bot post to Slack"
    assert stack.connector.activities == [], "a forged request made the bot post to Teams"


# -- Slack -------------------------------------------------------------------------------------


def slack_forgeries():
    """(name, body, headers) of requests that must all be refused with 401."""
    body = json.dumps(event_callback(mention("<@UBOT> forged", ch=channel())))
    other = json.dumps(event_callback(mention("<@UBOT> what was signed", ch=channel())))
    now = int(time.time())
    good = signed_headers(body, SECRET)
    sig = good["X-Slack-Signature"]
    ctype = {"Content-Type": "application/json"}
    cases = [
        ("no signature", body, ctype),
        ("no timestamp", body, {**ctype, "X-Slack-Signature": sig}),
        ("no signature, timestamp", body, {**ctype, "X-Slack-Request-Timestamp": str(now)}),
        ("wrong secret", body, signed_headers(body, "not-the-secret")),
        ("empty secret", body, signed_headers(body, "")),
        ("signature of another body", body, signed_headers(other, SECRET)),
        ("body with a byte appended", body + " ", good),
        ("replayed: 6 minutes old", body, signed_headers(body, SECRET, timestamp=now - 360)),
        ("replayed: a day old", body, signed_headers(body, SECRET, timestamp=now - 86400)),
        ("from the future", body, signed_headers(body, SECRET, timestamp=now + 400)),
        ("v1 scheme", body, {**good, "X-Slack-Signature": "v1=" + sig[3:]}),
        ("upper-case digest", body, {**good, "X-Slack-Signature": "v0=" + sig[3:].upper()}),
        ("truncated digest", body, {**good, "X-Slack-Signature": sig[:-8]}),
        ("empty digest", body, {**good, "X-Slack-Signature": "v0="}),
        ("not a number", body, {**good, "X-Slack-Request-Timestamp": "yesterday"}),
        ("negative time", body, signed_headers(body, SECRET, timestamp=-now)),
        ("huge time", body, {**good, "X-Slack-Request-Timestamp": "9" * 40}),
    ]
    fields = slash_command("prompt set --global pwned", response_url="http://127.0.0.1:9/x")
    slash = form(fields)
    cases.append(
        (
            "slash command, wrong secret",
            slash,
            signed_headers(slash, "nope", content_type="application/x-www-form-urlencoded"),
        )
    )
    return cases


# Only the names at collection time: the requests are signed when each test runs, since a
# timestamp taken at collection drifts by the minutes the suite runs before this file (a "from
# the future" request signed 400 s ahead would be inside Slack's 5-minute window by then).
SLACK_FORGERY_NAMES = [c[0] for c in slack_forgeries()]


@pytest.mark.parametrize("name", SLACK_FORGERY_NAMES)
async def test_forged_slack_request_is_401_and_costs_nothing(fresh, name):
    stack = fresh
    _, body, headers = next(c for c in slack_forgeries() if c[0] == name)
    assert await stack.slack_post(body, headers) == 401
    await asyncio.sleep(0.2)
    nothing_happened(stack)
    figure("attacks tried (authentication)")


async def test_replayed_slack_request_within_the_window_is_answered_once(fresh):
    """A captured request replayed within the 5 minutes passes the signature check (as Slack's
    scheme allows) and changes nothing: the post is answered once."""
    stack = fresh
    ch, at = channel(), ts()
    body = json.dumps(event_callback(mention("<@UBOT> once", ch=ch, at=at)))
    headers = signed_headers(body, SECRET)
    results = [await stack.slack_post(body, headers) for _ in range(5)]
    assert results == [200] * 5
    assert await slack_thread(stack.slack, ch, at, 1, quiet=0.5) == ["Echo: once"]
    assert len(stack.model.chat_requests) == 1
    figure("attacks tried (authentication)")
    figure("duplicate deliveries sent", 4)


# -- Teams -------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with_public_key(issuer: LocalIssuer, **claims) -> str:
    """The algorithm-confusion forgery: HS256 'signed' with the server's public key."""
    public = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": issuer.kid}).encode())
    body = b64(json.dumps(issuer.claims(**claims)).encode())
    mac = hmac.new(public, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def tampered(token: str, **changes) -> str:
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


def teams_forgeries(issuer: LocalIssuer, service_url: str) -> list[tuple[str, str | None]]:
    ok = {"aud": APP_ID, "service_url": service_url}
    valid = issuer.token(**ok)
    return [
        ("no Authorization header", None),
        ("empty bearer", "Bearer "),
        ("basic auth", "Basic dXNlcjpwYXNz"),
        ("garbage", "Bearer not.a.jwt"),
        ("two tokens", f"Bearer {valid} {valid}"),
        ("expired", f"Bearer {issuer.expired_token(**ok)}"),
        ("not yet valid", f"Bearer {issuer.token(issued_ago=-3600, **ok)}"),
        ("wrong audience", f"Bearer {issuer.token(aud='another-bot', service_url=service_url)}"),
        (
            "wrong issuer",
            f"Bearer {issuer.token(iss='https://evil.example.com', **ok)}",
        ),
        ("alg none", f"Bearer {issuer.unsigned_token(**ok)}"),
        ("signed with an unknown key", f"Bearer {issuer.foreign_token(**ok)}"),
        ("unknown key id", f"Bearer {issuer.token(kid='no-such-key', **ok)}"),
        ("no key id", f"Bearer {issuer.token(kid=None, **ok)}"),
        ("HS256 with the public key", f"Bearer {hs256_with_public_key(issuer, **ok)}"),
        ("RS512", f"Bearer {issuer.token(alg='RS512', **ok)}"),
        ("payload changed after signing", f"Bearer {tampered(valid, aud='another-bot')}"),
        (
            "audience swapped in",
            f"Bearer {tampered(issuer.token(aud='x', service_url=service_url), aud=APP_ID)}",
        ),
        (
            "token for another service URL",
            f"Bearer {issuer.token(aud=APP_ID, service_url='https://evil.example.com/')}",
        ),
    ]


async def test_forged_teams_tokens_are_401_and_cost_nothing(teams_svc, issuer, model, connector):
    st, svc = teams_svc
    st.reset()
    forgeries = teams_forgeries(issuer, connector.url)
    for name, header in forgeries:
        act = st.activity("personal_message", text=f"forged: {name}")
        headers = {"Authorization": header} if header is not None else {}
        assert await st.teams(act, svc=svc, headers=headers) == 401, name
        figure("attacks tried (authentication)")
    await asyncio.sleep(0.3)
    nothing_happened(st)
    rejected = [line for line in svc.lines if "rejected (401)" in line]
    assert len(rejected) == len(forgeries), "every refusal is logged"

    # The genuine article still works (so the 401s above are not a service that refuses all).
    model.script(Reply("Authenticated answer."))
    act = st.activity("personal_message", text="a real question")
    token = issuer.token(aud=APP_ID, service_url=connector.url)
    assert await st.teams(act, svc=svc, headers={"Authorization": f"Bearer {token}"}) == 200
    conv = act["conversation"]["id"]
    assert await teams_thread(connector, conv, 1) == ["Authenticated answer."]
    for posted in (a for a in connector.activities if a.conversation_id == conv):
        scheme, _, token = (posted.authorization or "").partition(" ")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert scheme == "Bearer" and claims["appid"] == APP_ID  # replies carry the bot's token


async def test_unauthenticated_teams_body_is_not_even_parsed(teams_svc):
    st, svc = teams_svc
    for body in (b"{nope", b"[" * 100_000, b"\xff\xfe"):
        assert await st.teams(body, svc=svc, headers={}) == 401
        figure("attacks tried (authentication)")
    assert await st.teams(uuid.uuid4().hex.encode(), svc=svc, headers={"Authorization": "x"}) == 401
