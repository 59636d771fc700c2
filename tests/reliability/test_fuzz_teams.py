"""Random Teams activities with valid Bot Framework tokens never get a 500."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fixtures.teams.harness import APP_ID, load
from tests.support.fuzz_harness import (
    CONTENT_TYPES,
    FUZZ,
    OK,
    TEXTS,
    World,
    mutated,
    no_500s,
)

pytestmark = pytest.mark.security


# A fuzzed activity may also name a serviceUrl its token does not vouch for (401) or a channel
# other than Teams (403).
TEAMS_OK = OK | {401, 403}


# -- Teams -------------------------------------------------------------------------------------

TEAMS_FIXTURES = [
    "personal_message",
    "group_chat_mention",
    "channel_mention",
    "conversation_update_bot_added",
    "conversation_update_team_install",
]
TEAMS_KEYS = [
    "type",
    "id",
    "text",
    "textFormat",
    "conversation",
    "from",
    "recipient",
    "entities",
    "channelData",
    "channelId",
    "serviceUrl",
    "membersAdded",
    "membersRemoved",
    "attachments",
    "value",
    "name",
    "replyToId",
    "locale",
    "timestamp",
]


def teams_activity(world: World):
    safe_urls = [world.connector.url, "http://127.0.0.1:9/", "not a url", "", None, 42]

    @st.composite
    def build(draw):
        act = load(draw(st.sampled_from(TEAMS_FIXTURES)))
        act["id"] = str(uuid.uuid4().int % 10**13)
        act["conversation"]["id"] = f"fuzz-{uuid.uuid4().hex[:8]}"
        if draw(st.booleans()):
            act["text"] = draw(TEXTS.map(lambda t: t.replace("<@UBOT>", "<at>Threadwise</at>")))
        if draw(st.booleans()):
            act["type"] = draw(
                st.sampled_from(["message", "invoke", "event", "typing", "messageReaction", ""])
                | st.text(max_size=10)
            )
        act = draw(mutated(act, TEAMS_KEYS))
        # Replies go only where the test's fakes listen (or nowhere at all).
        act["serviceUrl"] = draw(st.sampled_from(safe_urls))
        return act

    return build()


def test_random_teams_activities_never_500(world):
    @FUZZ
    @given(act=teams_activity(world), ctype=st.sampled_from(CONTENT_TYPES))
    def run(act, ctype):
        body = json.dumps(act).encode()
        headers = {"Content-Type": ctype} if ctype else {}
        url = act.get("serviceUrl")
        claim = url if isinstance(url, str) and url else None
        headers["Authorization"] = world.connector.authorization(APP_ID, claim)
        status = world.post("/api/messages", body, headers)
        assert status in TEAMS_OK, (status, act)

    run()
    world.alive()
    no_500s(world)
