"""The ack never waits for a user's name; names are looked up once per workspace and user."""

from __future__ import annotations

from tests.support.fakes.fake_slack import (
    app_mention,
    new_ts,
)
from tests.support.slack_adapter_harness import h, running, slack

__all__ = ["h", "slack"]  # the fixtures


# -- acknowledging fast ----------------------------------------------------------------------


async def test_ack_does_not_wait_for_the_name_lookup_or_the_reply(slack):
    async def slow_model(msg, reply):
        import asyncio

        await asyncio.sleep(5)

    slack.fail("users.info", error="user_not_found", delay=4)
    async with running(slack, script=slow_model) as h:
        status, _, _ = await h.event(app_mention("<@UBOT> hi", user="U2"))
        assert status == 200
        # The lookup answers 4 s after it is asked: acked first means nothing handed over yet.
        assert h.handler.submitted == []  # still looking the name up after the ack


# -- names -----------------------------------------------------------------------------------


async def test_display_names_are_cached_per_workspace_and_user(h):
    await h.event(app_mention("<@UBOT> one", ts=new_ts()))
    await h.handler.wait_for(1)
    await h.event(app_mention("<@UBOT> two", ts=new_ts()))
    await h.handler.wait_for(2)
    assert len(h.slack.calls_to("users.info")) == 1
    assert h.cache.data == {"slack:user:T0FAKE:U1": "Ann"}
    assert h.cache.ttls["slack:user:T0FAKE:U1"] == 3600


async def test_unknown_user_falls_back_to_the_id_and_is_not_cached(h):
    await h.event(app_mention("<@UBOT> hi", user="U404"))
    [msg] = await h.handler.wait_for(1)
    assert msg.user_name == "U404"
    assert h.cache.data == {}
