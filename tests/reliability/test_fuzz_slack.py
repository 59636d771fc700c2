"""Signed mutated Slack events, slash-command forms and random bodies never get a 500."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fakes.fake_slack import event_callback, signed_headers, slash_command
from tests.support.fuzz_harness import (
    CONTENT_TYPES,
    FUZZ,
    OK,
    TEXTS,
    World,
    json_value,
    mutated,
    no_500s,
)
from tests.support.stack import SECRET, ts

pytestmark = pytest.mark.security


SLACK_KEYS = [
    "enterprise",
    "enterprise_id",
    "is_enterprise_install",
    "user_id",
    "view",
    "container",
    "previous_message",
    "context_team_id",
    "type",
    "event",
    "text",
    "user",
    "channel",
    "ts",
    "thread_ts",
    "subtype",
    "channel_type",
    "bot_id",
    "team",
    "team_id",
    "event_id",
    "command",
    "challenge",
    "authorizations",
    "blocks",
    "files",
    "message",
    "hidden",
    "user_team",
    "api_app_id",
]
EVENTS = json.loads((Path(__file__).parents[1] / "support/fixtures/slack/events.json").read_text())
EVENTS.pop("_comment")


@st.composite
def slack_event_payload(draw):
    event = copy.deepcopy(draw(st.sampled_from(list(EVENTS.values()))))
    event["ts"] = ts()  # a fresh post, so the service really handles it
    event["channel"] = draw(st.sampled_from(["CFUZZ", "DFUZZ", "GFUZZ", event.get("channel")]))
    if draw(st.booleans()):
        event["text"] = draw(TEXTS)
    body = event_callback(event, event_id="Ev" + uuid.uuid4().hex[:10])
    return draw(mutated(body, SLACK_KEYS))


def form_payload(world: World):
    @st.composite
    def build(draw):
        fields = slash_command(draw(TEXTS), response_url=world.slack.response_url("fuzz"))
        fields = draw(mutated(fields, ["command", "text", "user_id", "channel_id", "team_id"]))
        fields["response_url"] = world.slack.response_url("fuzz")  # loopback only
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}

    return build()


# -- Slack -------------------------------------------------------------------------------------


def test_signed_mutated_slack_events_never_500(world):
    @FUZZ
    @given(payload=slack_event_payload(), ctype=st.sampled_from(CONTENT_TYPES))
    def run(payload, ctype):
        body = json.dumps(payload).encode()
        status = world.post("/slack/events", body, signed_headers(body, SECRET, content_type=ctype))
        assert status in OK, (status, payload)

    run()
    world.alive()
    no_500s(world)


def test_signed_slash_commands_and_forms_never_500(world):
    @FUZZ
    @given(fields=form_payload(world), as_payload=st.booleans())
    def run(fields, as_payload):
        body = urlencode({"payload": json.dumps(fields)} if as_payload else fields).encode()
        headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
        status = world.post("/slack/events", body, headers)
        assert status in OK, (status, fields)

    run()
    world.alive()
    no_500s(world)


def test_signed_random_bytes_and_json_values_never_500(world):
    @FUZZ
    @given(
        body=st.binary(max_size=300)
        | json_value.map(lambda v: json.dumps(v).encode())
        | st.text(max_size=100).map(lambda t: t.encode("utf-16")),
        ctype=st.sampled_from(CONTENT_TYPES),
    )
    def run(body, ctype):
        status = world.post("/slack/events", body, signed_headers(body, SECRET, content_type=ctype))
        assert status in OK, (status, body)

    run()
    world.alive()
    no_500s(world)
