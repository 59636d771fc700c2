"""Slack requests are checked, acknowledged before their answer, and also come over Socket Mode."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp
import pytest

from tests.support.fakes.fake_openai import Reply
from tests.support.fakes.fake_slack import app_mention, event_callback, new_ts, signed_headers
from tests.support.helpers import ServeProcess, delete_prefix
from tests.support.slack_e2e import SECRET, channel, post, replies

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


# -- request checks --------------------------------------------------------------------------


async def test_bad_signature_and_stale_timestamp_are_401(service, model, slack, fresh):
    body = json.dumps(event_callback(app_mention("<@UBOT> hi", channel=channel())))
    assert (await post(service, body, signed_headers(body, "wrong-secret")))[0] == 401
    stale = signed_headers(body, SECRET, timestamp=int(time.time()) - 600)
    assert (await post(service, body, stale))[0] == 401
    assert (await post(service, body, {"Content-Type": "application/json"}))[0] == 401
    await asyncio.sleep(0.5)
    assert model.chat_requests == [] and slack.methods() == []


@pytest.mark.parametrize("body", [b"{oops", b"[]", b'{"type": "event_callback"}', b"\xff\xfe"])
async def test_malformed_signed_body_is_400(service, body):
    assert (await post(service, body, signed_headers(body, SECRET)))[0] == 400


async def test_url_verification_answers_the_challenge(service):
    body = json.dumps({"token": "t", "challenge": "c-123", "type": "url_verification"})
    async with aiohttp.ClientSession() as http:
        async with http.post(
            service.url + "/slack/events", data=body, headers=signed_headers(body, SECRET)
        ) as r:
            assert r.status == 200
            assert await r.json() == {"challenge": "c-123"}


# -- acknowledging fast ----------------------------------------------------------------------


async def test_every_request_is_acknowledged_before_its_answer_with_a_slow_model(
    service, model, slack, fresh
):
    """Acks never wait for the model: each one arrives before its reply is finished.

    Ordering, not timing: the model is held 5 s, and every ack must come back before the
    reply to that event is. The latencies are printed for information; bench/ measures them.
    """
    model.configure(delay=5.0)
    sequential: list[float] = []
    concurrent: list[float] = []
    acked: dict[str, float] = {}  # channel → when its ack came back

    async with aiohttp.ClientSession() as http:

        async def one(into: list[float], i: int) -> None:
            ch = channel()
            event = app_mention(f"<@UBOT> question {i}", channel=ch)
            body = json.dumps(event_callback(event))
            started = time.monotonic()
            async with http.post(
                service.url + "/slack/events", data=body, headers=signed_headers(body, SECRET)
            ) as r:
                await r.read()
                assert r.status == 200
            acked[ch] = time.monotonic()
            into.append(acked[ch] - started)

        for i in range(50):  # one at a time, while the earlier ones wait for the model
            await one(sequential, i)
        for burst in range(2):  # then bursts of 25 at once
            await asyncio.gather(*(one(concurrent, 100 + burst * 25 + i) for i in range(25)))

    def pct(xs: list[float], q: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))] * 1000

    print(
        "\nSlack ack latency with the model delayed 5 s: "
        f"sequential p50 {pct(sequential, 0.5):.1f} ms p99 {pct(sequential, 0.99):.1f} ms; "
        f"bursts of 25 p50 {pct(concurrent, 0.5):.1f} ms p99 {pct(concurrent, 0.99):.1f} ms"
    )
    await slack.wait_for(lambda s: len(s.calls_to("chat.stopStream")) >= 100, 300)
    finished = {c.params.get("channel"): c.t for c in slack.calls_to("chat.stopStream")}
    assert set(finished) == set(acked)
    late = [ch for ch, at in acked.items() if at >= finished[ch]]
    assert not late, f"{len(late)} acks came after their answer"


# -- Socket Mode -----------------------------------------------------------------------------


async def test_socket_mode_service_answers_events_without_a_public_url(
    redis_url, model, slack, fresh
):
    from tests.support.fakes.fake_socket_mode import FakeSocketMode

    prefix = f"tw-slack-sm-{uuid.uuid4().hex[:8]}:"
    async with FakeSocketMode() as sm:
        slack.socket_mode_url = sm.url
        env = {
            "SLACK_BOT_TOKEN": slack.token,
            "SLACK_APP_TOKEN": slack.app_token,
            "SLACK_API_URL": slack.api_url,
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "test-key",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "LLM_MAX_RETRIES": "0",
        }
        async with ServeProcess(env) as svc:
            await sm.wait_connected(timeout=60)
            model.script(Reply("Over the socket."))
            ch, ts = channel(), new_ts()
            eid = await sm.send_event(event_callback(app_mention("<@UBOT> hi", channel=ch, ts=ts)))
            assert (await sm.wait_ack(eid)) == {"envelope_id": eid}
            assert await replies(slack, ch, ts) == ["Over the socket."]
            body = json.dumps(event_callback(app_mention("<@UBOT> hi")))
            status, _ = await post(svc, body, signed_headers(body, SECRET))
            assert status == 404  # no HTTP endpoint in Socket Mode
        await sm._wait(lambda: not sm.open_connections, 10, "the service to disconnect")
    await delete_prefix(redis_url, prefix)
