"""Teams' AI label and feedback loop end to end: activities and `message/submitAction` invokes
→ a running `threadwise serve` (anonymous mode, real Redis, fake model) → the fake connector."""

from __future__ import annotations

import itertools
import json
import uuid

import aiohttp
import pytest
import pytest_asyncio

from bot.store import RedisStore
from tests.support.fakes.fake_connector import FakeConnector, Recorded
from tests.support.fakes.fake_openai import FakeOpenAI, Reply
from tests.support.fixtures.teams.harness import load
from tests.support.helpers import ServeProcess, delete_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

AI_LABEL = {
    "type": "https://schema.org/Message",
    "@type": "Message",
    "@context": "https://schema.org",
    "additionalType": ["AIGeneratedContent"],
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def model():
    async with FakeOpenAI() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def connector():
    async with FakeConnector() as fake:
        yield fake


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def prefix():
    return f"tw-teams-fb-{uuid.uuid4().hex[:8]}:"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(redis_url, model, connector, prefix):
    env = {
        "TEAMS_ALLOW_ANONYMOUS": "true",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "test-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": prefix,
        "LLM_MAX_RETRIES": "0",
    }
    async with ServeProcess(env) as svc:
        yield svc
    await delete_prefix(redis_url, prefix)


@pytest_asyncio.fixture(loop_scope="module")
async def store(redis_url, prefix):
    s = RedisStore(redis_url, prefix=prefix, history_budget=1000, history_ttl=60)
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="module")
async def fresh(model, connector):
    model.reset()
    connector.reset()
    yield


_ids = itertools.count(1)


def activity(name: str, connector: FakeConnector, **changes) -> dict:
    act = load(name, service_url=connector.url, **changes)
    act["id"] = f"{1_900_000_000_000 + next(_ids)}"
    conv = act["conversation"]
    if conv.get("conversationType") == "channel":
        conv["id"] = f"{conv['id'].split(';')[0]};messageid={act['id']}"
    else:
        conv["id"] = f"{conv['id'][:40]}-{uuid.uuid4().hex[:8]}"
    return act


def submit(act: dict, answer_id: str, reaction: str, text: str | None = None) -> dict:
    """The invoke Teams sends when the person clicks 👍/👎 (and perhaps types why)."""
    value: dict = {"actionName": "feedback", "actionValue": {"reaction": reaction}}
    if text is not None:
        value["actionValue"]["feedback"] = json.dumps({"feedbackText": text})
    return {
        **{k: act[k] for k in ("channelId", "serviceUrl", "from", "conversation", "recipient")},
        "type": "invoke",
        "name": "message/submitAction",
        "id": f"{1_900_000_000_000 + next(_ids)}",
        "replyToId": answer_id,
        "value": value,
        "channelData": act.get("channelData", {}),
    }


async def post(service: ServeProcess, act: dict) -> tuple[int, object]:
    async with aiohttp.ClientSession() as http:
        async with http.post(service.url + "/api/messages", json=act) as resp:
            body = await resp.read()
            return resp.status, json.loads(body) if body else None


def finished(connector: FakeConnector, conversation_id: str) -> list[Recorded]:
    return [
        a
        for a in connector.activities
        if a.conversation_id == conversation_id
        and a.type == "message"
        and (a.stream is None or a.stream.get("streamType") == "final")
    ]


async def answer(connector: FakeConnector, conversation_id: str) -> Recorded:
    await connector.wait_for(lambda _: len(finished(connector, conversation_id)) >= 1, 20)
    [only] = finished(connector, conversation_id)
    return only


def ai_labelled(a: Recorded) -> bool:
    return any(
        {k: e.get(k) for k in AI_LABEL} == AI_LABEL for e in a.activity.get("entities") or []
    )


def feedback_loop(a: Recorded) -> bool:
    return (a.activity.get("channelData") or {}).get("feedbackLoopEnabled") is True


@pytest.mark.parametrize(
    ("fixture", "loop"),
    [("personal_message", True), ("group_chat_mention", True), ("channel_mention", False)],
)
async def test_model_answers_carry_the_ai_label_and_the_feedback_loop_where_teams_shows_it(
    service, model, connector, fresh, fixture, loop
):
    model.script(Reply("Here is an agenda."))
    act = activity(fixture, connector)
    assert (await post(service, act))[0] == 200
    reply = await answer(connector, act["conversation"]["id"])
    assert reply.text == "Here is an agenda."
    assert ai_labelled(reply)
    assert feedback_loop(reply) is loop
    assert "feedbackLoop" not in (reply.activity.get("channelData") or {})  # never both


async def test_command_answers_carry_neither(service, model, connector, fresh):
    act = activity("personal_message", connector, text="!help")
    await post(service, act)
    reply = await answer(connector, act["conversation"]["id"])
    assert "!reset" in reply.text
    assert not ai_labelled(reply) and not feedback_loop(reply)


async def test_a_feedback_invoke_is_answered_and_the_reaction_and_its_text_are_stored(
    service, model, connector, fresh, store
):
    model.script(Reply("Twelve."))
    act = activity("personal_message", connector)
    await post(service, act)
    reply = await answer(connector, act["conversation"]["id"])
    status, body = await post(service, submit(act, reply.id, "like", "short and right"))
    assert (status, body) == (200, {})
    [vote] = [v for v in await store.recent_votes(0, 100) if v.answer == reply.id]
    assert (vote.value, vote.comment, vote.platform) == ("up", "short and right", "teams")
    assert vote.conversation.endswith(act["conversation"]["id"])
    assert vote.deployment == "gpt-4o" and vote.prompt_scope == "default"
    assert vote.user.startswith("teams:") and ":anonymous:" in vote.user  # nothing vouched

    assert (await post(service, submit(act, reply.id, "dislike")))[0] == 200
    [vote] = [v for v in await store.recent_votes(0, 100) if v.answer == reply.id]
    assert (vote.value, vote.comment) == ("down", "")


async def test_other_and_malformed_invokes(service, connector, fresh, store):
    act = activity("personal_message", connector)
    other = dict(submit(act, "1", "like"), name="composeExtension/query")
    assert await post(service, other) == (200, {})
    no_reaction = submit(act, "1", "meh")
    assert (await post(service, no_reaction))[0] == 400
    no_answer = submit(act, "", "like")
    assert (await post(service, no_answer))[0] == 400
    assert [v for v in await store.recent_votes(0, 100) if v.answer == "1"] == []
