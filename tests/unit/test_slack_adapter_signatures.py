"""A request without a valid, fresh signature is 401; a malformed signed body is 400, never 500."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.fakes.fake_slack import (
    app_mention,
    event_callback,
    signed_headers,
)
from tests.support.slack_adapter_harness import SECRET, h, slack

__all__ = ["h", "slack"]  # the fixtures


# -- signatures and malformed bodies ---------------------------------------------------------


async def test_bad_signature_is_401(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    headers = signed_headers(body, "not-the-secret")
    assert (await h.post(body, headers))[0] == 401


async def test_stale_timestamp_is_401_even_when_correctly_signed(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    headers = signed_headers(body, SECRET, timestamp=int(time.time()) - 301)
    assert (await h.post(body, headers))[0] == 401


async def test_future_timestamp_and_missing_or_garbage_headers_are_401(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    assert (await h.post(body, signed_headers(body, SECRET, timestamp=int(time.time()) + 301)))[
        0
    ] == 401
    assert (await h.post(body, {"Content-Type": "application/json"}))[0] == 401
    garbage = {**signed_headers(body, SECRET), "X-Slack-Request-Timestamp": "yesterday"}
    assert (await h.post(body, garbage))[0] == 401


async def test_tampered_body_is_401(h):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
    headers = signed_headers(body, SECRET)
    assert (await h.post(body.replace("hi", "ho"), headers))[0] == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"{}",
        b'{"type": "event_callback"}',
        b'{"type": "event_callback", "event": "nope"}',
        b'{"type": "url_verification"}',
        b"\xff\xfe\x00garbage",
        b"",
        b"just=a&form=body",
    ],
)
async def test_malformed_but_signed_body_is_400(h, body):
    status, _, _ = await h.post(body, signed_headers(body, SECRET))
    assert status == 400
    assert h.handler.submitted == []


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    payload=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "type",
                        "event",
                        "text",
                        "user",
                        "channel",
                        "ts",
                        "thread_ts",
                        "subtype",
                        "command",
                        "challenge",
                        "team_id",
                        "x",
                    ]
                ),
                children,
                max_size=6,
            )
        ),
        max_leaves=12,
    )
)
async def test_no_signed_body_ever_gets_a_500(h, payload):
    body = json.dumps(payload)
    status, _, _ = await h.post(body, signed_headers(body, SECRET))
    assert status in (200, 400)


async def test_event_fields_of_the_wrong_type_are_ignored_not_crashed(h):
    for event in [
        {
            "type": "message",
            "user": ["U1"],
            "text": "x",
            "ts": "1.1",
            "channel": "C1",
            "channel_type": "im",
        },
        {
            "type": "message",
            "user": "U1",
            "text": {"a": 1},
            "ts": "1.1",
            "channel": "D1",
            "channel_type": "im",
        },
        {"type": "app_mention", "user": "U1", "text": "<@UBOT>", "ts": 12, "channel": "C1"},
    ]:
        assert (await h.event(event))[0] == 200
    await h.slack.settle(0.2)
    assert h.handler.submitted == []
