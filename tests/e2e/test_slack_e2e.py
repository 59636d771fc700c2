"""Slack end to end: signed Events API requests → a running `threadwise serve` → Slack Web API.

The service runs as a subprocess with real Redis, the fake Azure OpenAI server as its model
and `FakeSlack` as its Slack Web API (SLACK_API_URL). Each test uses fresh channels and
timestamps, so one service serves the whole module.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.support.fakes.fake_openai import Error, FakeOpenAI, Reply
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    FakeSlack,
    app_mention,
    event_callback,
    form,
    message,
    new_ts,
    signed_headers,
    slash_command,
)
from tests.support.helpers import ServeProcess, delete_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

SECRET = DEFAULT_SIGNING_SECRET
ADMIN = "U1"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack():
    users = {"U1": "Ann Admin", "U2": {"display_name": "", "real_name": "Bob Stone"}}
    async with FakeSlack(users=users) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, slack):
    prefix = f"tw-slack-e2e-{uuid.uuid4().hex[:8]}:"
    env = {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "BOT_ADMINS": f"slack:{ADMIN}",
        "TOKEN_LIMIT": "128000",
        "MAX_RESPONSE_TOKENS": "60000",
        "LLM_MAX_RETRIES": "0",
    }
    async with ServeProcess(env) as svc:
        yield svc
    await delete_prefix(redis_url, prefix)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, slack):
    model.reset()
    model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)
    slack.reset()
    yield
    model.configure(tokens_per_second=None, reply=None, delay=0.0, first_token_delay=0.0)


def channel() -> str:
    return "C" + uuid.uuid4().hex[:9].upper()


def dm() -> str:
    return "D" + uuid.uuid4().hex[:9].upper()


async def post(svc: ServeProcess, body: str | bytes, headers: dict[str, str]) -> tuple[int, float]:
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.post(svc.url + "/slack/events", data=body, headers=headers) as r:
            await r.read()
            return r.status, time.monotonic() - started


async def send(svc: ServeProcess, event: dict, *, event_id=None, retry_num=None) -> int:
    body = json.dumps(event_callback(event, event_id=event_id))
    status, _ = await post(svc, body, signed_headers(body, SECRET, retry_num=retry_num))
    return status


async def replies(slack: FakeSlack, ch: str, thread: str | None, n: int = 1, timeout=20.0):
    """The bot's finished messages in a thread, once there are `n` (and nothing else moves)."""
    await slack.wait_for(
        lambda s: len([m for m in s.thread(ch, thread) if not m.streaming]) >= n, timeout
    )
    await slack.settle(0.3)
    return slack.thread_texts(ch, thread)


# -- conversations ---------------------------------------------------------------------------


async def test_mention_is_answered_in_its_thread_by_streaming(service, model, slack, fresh):
    model.script(Reply("Redis keeps data in memory."))
    ch, ts = channel(), new_ts()
    assert await send(service, app_mention("<@UBOT> what is Redis?", channel=ch, ts=ts)) == 200
    assert await replies(slack, ch, ts) == ["Redis keeps data in memory."]
    user = model.last_messages()[-1]
    assert user == {"role": "user", "content": "what is Redis?", "name": "Ann_Admin"}
    methods = [m for m in slack.methods() if m != "assistant.threads.setStatus"]
    assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
    assert slack.statuses and slack.statuses[0]["thread_ts"] == ts


async def test_streamed_reply_appends_at_a_paced_rate_in_order(service, model, slack, fresh):
    story = " ".join(f"token{i}" for i in range(60)) + "."
    model.script(Reply(story))
    model.configure(tokens_per_second=30)  # ~2 s of output
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> stream please", channel=ch, ts=ts))
    assert await replies(slack, ch, ts, timeout=30) == [story]
    calls = slack.calls_to("chat.startStream", "chat.appendStream", "chat.stopStream")
    names = [c.method for c in calls]
    assert names[0] == "chat.startStream" and names[-1] == "chat.stopStream"
    assert set(names[1:-1]) == {"chat.appendStream"} and len(names) >= 4
    gaps = [b.t - a.t for a, b in itertools.pairwise(calls[:-1])]
    assert min(gaps) >= 0.45, gaps  # paced, not a call per token
    assert all(c.params["channel"] == ch for c in calls)
    assert calls[0].params["thread_ts"] == ts
    assert calls[0].params["recipient_user_id"] == "U1"
    assert calls[0].params["recipient_team_id"] == "T0FAKE"


async def test_followup_without_mention_is_answered_with_the_thread_memory(
    service, model, slack, fresh
):
    model.script(Reply("Redis is a key-value store."), Reply("Postgres is relational."))
    ch, root = channel(), new_ts()
    await send(service, app_mention("<@UBOT> what is Redis?", channel=ch, ts=root))
    await replies(slack, ch, root)
    await send(service, message("and Postgres?", user="U2", channel=ch, thread_ts=root))
    assert await replies(slack, ch, root, 2) == [
        "Redis is a key-value store.",
        "Postgres is relational.",
    ]
    contents = [m["content"] for m in model.last_messages()]
    assert contents[-3:] == ["what is Redis?", "Redis is a key-value store.", "and Postgres?"]
    assert model.last_messages()[-1]["name"] == "Bob_Stone"


async def test_thread_the_bot_never_joined_gets_no_answer(service, model, slack, fresh):
    ch = channel()
    await send(service, message("unrelated chatter", channel=ch, thread_ts=new_ts()))
    await send(service, message("top-level chatter", channel=ch))
    await asyncio.sleep(1.0)
    assert model.chat_requests == []
    assert slack.bot_messages(ch) == []


async def test_dm_top_level_is_answered_top_level_and_dm_thread_in_the_thread(
    service, model, slack, fresh
):
    model.script(Reply("Hello Ann."), Reply("In the thread."))
    d, top = dm(), new_ts()
    await send(service, message("hi there", channel=d, channel_type="im", ts=top))
    assert await replies(slack, d, None) == ["Hello Ann."]
    assert "name" not in model.last_messages()[-1]  # one speaker in a DM: no name
    assert "chat.startStream" not in slack.methods()  # a top-level DM reply is posted
    await send(service, message("go on", channel=d, channel_type="im", thread_ts=top))
    assert await replies(slack, d, top) == ["In the thread."]
    assert [m["content"] for m in model.last_messages()] == [
        "You are a helpful assistant.",
        "go on",
    ]


async def test_ignored_events_cost_no_model_call_and_no_post(service, model, slack, fresh):
    ch = channel()
    for event in [
        message("Build passed", user=None, channel=ch, subtype="bot_message", bot_id="B9"),
        message("<@UBOT> loop?", user="UBOT", channel=ch, bot_id="BBOT"),
        message(
            "", channel=ch, subtype="message_changed", hidden=True, message={"text": "<@UBOT> x"}
        ),
        message("", channel=ch, subtype="message_deleted", hidden=True, deleted_ts=new_ts()),
        message("<@U2> has joined the channel", user="U2", channel=ch, subtype="channel_join"),
        {"type": "reaction_added", "user": "U1", "reaction": "eyes", "item": {"channel": ch}},
    ]:
        assert await send(service, event) == 200
    await asyncio.sleep(1.0)
    assert model.chat_requests == []
    assert slack.methods() == []


async def test_duplicate_and_retried_deliveries_with_a_slow_model_get_exactly_one_answer(
    service, model, slack, fresh
):
    model.configure(first_token_delay=2.0)
    model.script(Reply("Only once."), Reply("TWICE — a duplicate was answered"))
    ch, ts = channel(), new_ts()
    mention = app_mention("<@UBOT> answer once", channel=ch, ts=ts)
    twin = message("<@UBOT> answer once", channel=ch, ts=ts)
    statuses = await asyncio.gather(
        send(service, mention, event_id="EvDup1"),
        send(service, twin, event_id="EvDup2"),
    )
    await asyncio.sleep(0.5)
    statuses += await asyncio.gather(  # Slack's retries while the model is still thinking
        send(service, mention, event_id="EvDup1", retry_num=1),
        send(service, twin, event_id="EvDup2", retry_num=1),
        send(service, mention, event_id="EvDup1", retry_num=2),
    )
    assert statuses == [200] * 5
    assert await replies(slack, ch, ts, timeout=30) == ["Only once."]
    await asyncio.sleep(1.0)
    assert len(model.chat_requests) == 1
    assert slack.thread_texts(ch, ts) == ["Only once."]


async def test_model_failure_posts_a_short_apology_in_the_thread(service, model, slack, fresh):
    model.script(Error(500, {"error": {"message": "boom", "type": "server_error"}}))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> hello?", channel=ch, ts=ts))
    [apology] = await replies(slack, ch, ts)
    assert apology.startswith("Sorry") and "Traceback" not in apology


async def test_bang_command_in_a_mention_never_reaches_the_model(service, model, slack, fresh):
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> !help", channel=ch, ts=ts))
    [answer] = await replies(slack, ch, ts)
    assert "!reset" in answer
    assert model.chat_requests == []


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


# -- slash command ---------------------------------------------------------------------------


async def test_slash_command_is_answered_ephemerally_to_the_caller(service, model, slack, fresh):
    fields = slash_command("prompt", response_url=slack.response_url("slash1"), user=ADMIN)
    body = form(fields)
    headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
    status, elapsed = await post(service, body, headers)
    assert status == 200 and elapsed < 1.0
    await slack.wait_for(lambda s: len(s.responses) >= 1)
    [response] = slack.responses
    assert response["response_type"] == "ephemeral"
    assert "You are a helpful assistant." in response["text"]
    assert model.chat_requests == []
    assert slack.bot_messages() == []  # nothing posted in the channel for everyone


async def test_slash_command_admin_check_uses_the_slack_user(service, model, slack, fresh):
    fields = slash_command(
        "prompt set Answer like a pirate.", response_url=slack.response_url("s2"), user="U2"
    )
    body = form(fields)
    headers = signed_headers(body, SECRET, content_type="application/x-www-form-urlencoded")
    assert (await post(service, body, headers))[0] == 200
    await slack.wait_for(lambda s: len(s.responses) >= 1)
    assert "admin" in slack.responses[0]["text"].lower()


# -- streaming fallback and long replies -----------------------------------------------------


async def test_refused_streaming_falls_back_to_post_and_updates(service, model, slack, fresh):
    story = " ".join(f"word{i}" for i in range(40)) + "."
    model.script(Reply(story))
    model.configure(tokens_per_second=15)  # ~3 s of output: a few live updates
    slack.fail("chat.startStream", error="not_allowed", times=None)
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> tell me a story", channel=ch, ts=ts))
    await slack.wait_for(lambda s: s.thread_texts(ch, ts) == [story], 30)
    await slack.settle(0.5)
    methods = [m for m in slack.methods() if m != "assistant.threads.setStatus"]
    assert methods[:2] == ["chat.startStream", "chat.postMessage"]
    assert set(methods[2:]) == {"chat.update"} and len(methods) >= 4
    posts = [c.t for c in slack.calls_to("chat.postMessage", "chat.update")][:-1]
    assert all(b - a >= 0.95 for a, b in itertools.pairwise(posts))


async def test_long_reply_is_split_into_several_messages_on_paragraph_boundaries(
    service, model, slack, fresh
):
    paragraphs = []
    for i in range(60):
        if i % 9 == 4:
            code = "\n".join(f"    value_{i}_{j} = compute({j})" for j in range(25))
            paragraphs.append(f"```python\n{code}\n```")
        else:
            paragraphs.append(" ".join(f"p{i}w{j}" for j in range(90)))
    long_text = "\n\n".join(paragraphs)
    assert len(long_text) > 30_000
    model.script(Reply(long_text))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> write a lot", channel=ch, ts=ts))
    # Done when the whole text is there and nothing streams: between two pieces a busy machine
    # may pause longer than any quiet period.
    await slack.wait_for(
        lambda s: (
            not any(m.streaming for m in s.thread(ch, ts))
            and "\n\n".join(s.thread_texts(ch, ts)) == long_text
        ),
        120,
    )
    pieces = slack.thread_texts(ch, ts)
    assert len(pieces) >= 3
    assert all(len(p) <= 12_000 for p in pieces)
    assert "\n\n".join(pieces) == long_text
    assert all(p.count("```") % 2 == 0 for p in pieces)


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
