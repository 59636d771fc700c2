"""Slack's assistant pane and feedback buttons end to end: signed events and interactivity
payloads → a running `threadwise serve` (real Redis, fake model) → the fake Slack Web API."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import aiohttp
import pytest
import pytest_asyncio

from tests.support.fakes.fake_openai import Error, Reply
from tests.support.fakes.fake_slack import (
    FakeSlack,
    Message,
    app_mention,
    assistant_thread_event,
    block_actions,
    event_callback,
    form,
    message,
    new_ts,
    signed_headers,
)
from tests.support.helpers import ServeProcess, delete_prefix
from tests.support.slack_e2e import ADMIN, SECRET, channel, dm, service_env

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

FORM = "application/x-www-form-urlencoded"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def slack():
    async with FakeSlack(users={"U1": "Ann Admin", "U2": "Bob Stone"}) as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prefix():
    return f"tw-slack-fb-{uuid.uuid4().hex[:8]}:"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, slack, prefix):  # `model`: tests/e2e/conftest.py
    prompts = [{"title": "Plan my day", "message": "Help me plan my day"}]
    env = service_env(slack, model, redis_url, prefix, SLACK_SUGGESTED_PROMPTS=json.dumps(prompts))
    async with ServeProcess(env) as svc:
        yield svc
    await delete_prefix(redis_url, prefix)


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, slack):
    model.reset()
    slack.reset()
    yield


async def post(svc: ServeProcess, body: str, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(svc.url + "/slack/events", data=body, headers=headers) as r:
            await r.read()
            return r.status


async def send(svc: ServeProcess, event: dict) -> int:
    body = json.dumps(event_callback(event))
    return await post(svc, body, signed_headers(body, SECRET))


async def click(svc: ServeProcess, slack: FakeSlack, m: Message, kind: str, user: str) -> int:
    """`user` clicks 👍 (`positive`) or 👎 (`negative`) under the bot's message `m`."""
    buttons = slack.feedback_buttons(m)
    assert buttons is not None, "the answer has no feedback buttons"
    value = buttons[f"{kind}_button"]["value"]
    payload = block_actions(slack.message_payload(m), value, channel=m.channel, user=user)
    body = form({"payload": json.dumps(payload)})
    return await post(svc, body, signed_headers(body, SECRET, content_type=FORM))


async def finished(slack: FakeSlack, ch: str, thread: str | None, n: int = 1) -> list[Message]:
    await slack.wait_for(
        lambda s: len([m for m in s.thread(ch, thread) if not m.streaming]) >= n, 20
    )
    await slack.settle(0.3)
    return slack.thread(ch, thread)


async def command(svc, slack, text: str, ch: str, user: str = ADMIN) -> str:
    ts = new_ts()
    await send(svc, app_mention(f"<@UBOT> {text}", channel=ch, ts=ts, user=user))
    [answer] = await finished(slack, ch, ts)
    assert slack.feedback_buttons(answer) is None  # a command answer is not a model answer
    return answer.text


# -- the assistant pane ----------------------------------------------------------------------


async def test_opening_the_pane_greets_and_suggests_then_a_question_is_titled_answered_with_the_channel_in_view(  # noqa: E501
    service, model, slack, fresh
):
    d, thread = dm(), new_ts()
    opened = assistant_thread_event(channel=d, thread_ts=thread, context_channel="C1")
    assert await send(service, opened) == 200
    await slack.wait_for(lambda s: s.state.suggested_prompts and s.thread(d, thread))
    [greeting] = slack.thread(d, thread)
    assert "Ask me anything" in greeting.text
    [suggested] = slack.state.suggested_prompts
    assert suggested["thread_ts"] == thread and suggested["channel_id"] == d
    assert suggested["prompts"] == [{"title": "Plan my day", "message": "Help me plan my day"}]

    model.script(Reply("Redis keeps data in memory."), Reply("Yes, it can persist."))
    question = "what is Redis, and why would I use it for caching in front of Postgres?"
    await send(service, message(question, channel=d, channel_type="im", thread_ts=thread))
    answers = await finished(slack, d, thread, 2)
    assert [m.text for m in answers][1:] == ["Redis keeps data in memory."]
    assert slack.feedback_buttons(answers[1]) is not None
    system = model.last_messages()[0]
    assert system["role"] == "system" and "#general" in system["content"]
    assert [t["title"] for t in slack.state.titles] == [question[:59].rstrip() + "…"]

    # The pane thread is a conversation with memory; only the first question names it.
    await send(service, message("can it persist?", channel=d, channel_type="im", thread_ts=thread))
    await finished(slack, d, thread, 3)
    contents = [m["content"] for m in model.last_messages()[1:]]
    assert contents == [question, "Redis keeps data in memory.", "can it persist?"]
    assert len(slack.state.titles) == 1


async def test_a_changed_pane_context_reaches_the_model_and_a_redelivered_start_greets_once(
    service, model, slack, fresh
):
    slack.channels["C7"] = "release-planning"
    d, thread = dm(), new_ts()
    started = assistant_thread_event(channel=d, thread_ts=thread, context_channel="C1")
    await send(service, started)
    await send(service, started)  # Slack retried it
    changed = assistant_thread_event(
        "assistant_thread_context_changed", channel=d, thread_ts=thread, context_channel="C7"
    )
    await send(service, changed)
    await slack.wait_for(lambda s: len(s.state.suggested_prompts) >= 1)
    await slack.settle(0.5)
    assert len(slack.thread(d, thread)) == 1 and len(slack.state.suggested_prompts) == 1
    model.script(Reply("Noted."))
    await send(
        service,
        message("what is this channel for?", channel=d, channel_type="im", thread_ts=thread),
    )
    await finished(slack, d, thread, 2)
    assert "#release-planning" in model.last_messages()[0]["content"]


async def test_pane_threads_take_commands_and_answer_a_redelivered_question_once(
    service, model, slack, fresh
):
    d, thread = dm(), new_ts()
    await send(service, assistant_thread_event(channel=d, thread_ts=thread))
    await slack.wait_for(lambda s: s.thread(d, thread))
    await send(service, message("!help", channel=d, channel_type="im", thread_ts=thread))
    help_text = (await finished(slack, d, thread, 2))[1]
    assert "!reset" in help_text.text and slack.feedback_buttons(help_text) is None
    assert model.chat_requests == []
    model.script(Reply("Only once."))
    model.configure(first_token_delay=0.5)
    try:
        again = message("answer me once", channel=d, channel_type="im", thread_ts=thread)
        await send(service, again)
        await send(service, again)  # Slack retried the delivery
        await finished(slack, d, thread, 3)
        await slack.settle(1.0)
    finally:
        model.configure(first_token_delay=0.0)
    assert [m.text for m in slack.thread(d, thread)][2:] == ["Only once."]
    assert len(model.chat_requests) == 1


async def test_admins_change_the_suggested_prompts_from_the_chat(service, model, slack, fresh):
    ch = channel()
    refused = await command(service, slack, "!suggestions set --workspace Hi | hello", ch, "U2")
    assert "admin" in refused.lower() or "not allowed" in refused.lower()
    answer = await command(
        service, slack, "!suggestions set --workspace Weekly report | Draft my weekly report", ch
    )
    assert "set for the workspace scope" in answer
    d, thread = dm(), new_ts()
    await send(service, assistant_thread_event(channel=d, thread_ts=thread))
    await slack.wait_for(lambda s: len(s.state.suggested_prompts) >= 1)
    assert slack.state.suggested_prompts[-1]["prompts"] == [
        {"title": "Weekly report", "message": "Draft my weekly report"}
    ]
    history = await command(service, slack, "!suggestions history --workspace", ch)
    assert "Ann Admin (slack:U1) set" in history and "Weekly report" in history
    assert "Removed" in await command(service, slack, "!suggestions reset --workspace", ch)


# -- feedback buttons ------------------------------------------------------------------------


async def test_a_vote_is_thanked_counted_once_per_person_and_a_second_click_changes_it(
    service, model, slack, fresh
):
    model.script(Reply("Paris."))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> capital of France?", channel=ch, ts=ts))
    [answer] = await finished(slack, ch, ts)
    assert slack.methods()[-1] == "chat.stopStream"
    assert slack.feedback_buttons(answer)["action_id"] == "threadwise_feedback"

    assert await click(service, slack, answer, "positive", "U2") == 200
    await slack.wait_for(lambda s: len(s.state.ephemerals) == 1)
    assert slack.state.ephemerals[0]["user"] == "U2"
    assert slack.state.ephemerals[0]["thread_ts"] == ts
    assert await click(service, slack, answer, "positive", "U2") == 200  # the same vote again
    await slack.wait_for(lambda s: len(s.state.ephemerals) == 2)
    counts = await command(service, slack, "!feedback", ch)
    assert "this channel: today 👍 1 / 👎 0" in counts

    assert await click(service, slack, answer, "negative", "U2") == 200  # changed their mind
    assert await click(service, slack, answer, "positive", "U1") == 200
    await slack.wait_for(lambda s: len(s.state.ephemerals) == 4)
    counts = await command(service, slack, "!feedback", ch)
    assert "this channel: today 👍 1 / 👎 1 (50% 👍)" in counts


async def test_feedback_is_admin_only(service, model, slack, fresh):
    answer = await command(service, slack, "!feedback", channel(), "U2")
    assert "👍" not in answer


async def test_commands_and_apologies_carry_no_buttons_and_a_fallback_answer_does(
    service, model, slack, fresh
):
    ch, ts = channel(), new_ts()
    model.script(Error(500, {"error": {"message": "boom", "type": "server_error"}}))
    await send(service, app_mention("<@UBOT> hello?", channel=ch, ts=ts))
    [apology] = await finished(slack, ch, ts)
    assert apology.text.startswith("Sorry") and slack.feedback_buttons(apology) is None

    slack.fail("chat.startStream", error="not_allowed")  # streaming refused: post and update
    model.script(Reply("Posted, not streamed."))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> again", channel=ch, ts=ts))
    [answer] = await finished(slack, ch, ts)
    assert answer.text == "Posted, not streamed."
    assert slack.feedback_buttons(answer) is not None

    d = dm()  # a top-level DM answer is posted, buttons with it
    model.script(Reply("Hi Ann."))
    await send(service, message("hi", channel=d, channel_type="im"))
    [dm_answer] = await finished(slack, d, None)
    assert slack.feedback_buttons(dm_answer) is not None


async def test_unsigned_or_forged_clicks_are_refused_and_record_nothing(
    service, model, slack, fresh, redis_url, prefix
):
    fake = {"ts": new_ts(), "type": "message", "text": "x"}
    payload = block_actions(fake, '{"v":"positive_feedback"}', channel=channel(), user="U2")
    body = form({"payload": json.dumps(payload)})
    assert await post(service, body, signed_headers(body, "wrong", content_type=FORM)) == 401
    # Signed, but a value that is not one of ours: acknowledged, nothing stored.
    payload["actions"][0]["value"] = "definitely-not-a-vote"
    body = form({"payload": json.dumps(payload)})
    assert await post(service, body, signed_headers(body, SECRET, content_type=FORM)) == 200
    await asyncio.sleep(0.5)
    assert slack.state.ephemerals == []


async def test_feedback_export_writes_one_json_line_per_vote(
    service, model, slack, fresh, redis_url, prefix
):
    model.script(Reply("Forty-two."))
    ch, ts = channel(), new_ts()
    await send(service, app_mention("<@UBOT> the answer?", channel=ch, ts=ts))
    [answer] = await finished(slack, ch, ts)
    await click(service, slack, answer, "negative", "U2")
    await slack.wait_for(lambda s: len(s.state.ephemerals) == 1)
    env = {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "feedback",
        "export",
        "--days",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**__import__("os").environ, **env},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    votes = [json.loads(line) for line in out.decode().splitlines()]
    [vote] = [v for v in votes if v["answer"] == answer.ts]
    assert vote["value"] == "down" and vote["user"] == "slack:T0FAKE:U2"
    assert vote["conversation"] == f"slack:T0FAKE:{ch}:{ts}"
    assert vote["deployment"] == "gpt-4o" and vote["prompt_scope"] == "default"
    assert vote["channel_scope"] == f"slack:T0FAKE:{ch}"


# -- App Home --------------------------------------------------------------------------------


async def test_the_home_tab_shows_admins_prompt_usage_and_feedback_and_others_only_how_to_ask(
    service, model, slack, fresh
):
    def opened(user: str) -> dict:
        return {"type": "app_home_opened", "user": user, "channel": dm(), "tab": "home",
                "event_ts": new_ts()}  # fmt: skip

    await send(service, opened(ADMIN))
    await send(service, opened("U2"))
    await slack.wait_for(lambda s: len(s.state.views) == 2)
    views = {v["user_id"]: v["view"] for v in slack.state.views}
    admin = json.dumps(views[ADMIN])
    assert views[ADMIN]["type"] == "home"
    assert "System prompt in effect" in admin and "You are a helpful assistant." in admin
    assert "Token usage" in admin and "Feedback on answers" in admin
    member = json.dumps(views["U2"])
    assert "Messages" in member and "Token usage" not in member and "Feedback" not in member
