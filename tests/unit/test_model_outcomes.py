"""What a person reads for each way a model call can end — a turn through the real openai SDK
against the fake model, with the behaviours real OpenAI-compatible servers showed (docs/spec.md
§4): one line per failure kind, the metric label of that kind, and what is kept."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from bot import pacing
from bot.app import build_service
from bot.messages import IncomingMessage
from bot.replies import (
    APOLOGY_AUTH,
    APOLOGY_BAD_REQUEST,
    APOLOGY_CONTEXT,
    APOLOGY_EMPTY_STREAM,
    APOLOGY_NOT_FOUND,
    APOLOGY_RATE_LIMITED,
    APOLOGY_SERVER_ERROR,
    APOLOGY_TIMEOUT,
    APOLOGY_UNREACHABLE,
    CUT_OFF,
    DEADLINE,
    FILTERED_PROMPT,
    INTERRUPTED,
)
from bot.settings import Settings
from tests.support.fakes.fake_openai import (
    EmptyStream,
    Error,
    FakeOpenAI,
    Hang,
    Reply,
    StreamDies,
    context_length_exceeded,
    prompt_content_filter,
    rate_limited,
    server_error,
)
from tests.support.fakes.fake_openai_limits import refused_base_url
from tests.support.recording import RecordingReply

_ids = itertools.count()
LONG = " ".join(f"word{i}" for i in range(300))


def message(text: str, thread: str = "100.1") -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T1",
        channel="C1",
        thread=thread,
        user_id="U1",
        user_name="Alice",
        text=text,
        message_id=f"m{next(_ids)}",
    )


@pytest.fixture
async def fake():
    async with FakeOpenAI() as f:
        yield f


@pytest.fixture
async def make(fake):
    made = []

    def build(**kw):
        args = dict(
            openai_base_url=fake.base_url,
            azure_openai_api_key="k",
            azure_openai_deployment="gpt-4o",
            llm_max_retries=0,
        )
        args.update(kw)
        svc = build_service(Settings(**args))
        made.append(svc)
        return svc

    yield build
    for svc in made:
        await svc.close()


@dataclass
class Outcome:
    id: str
    script: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    knobs: dict = field(default_factory=dict)
    says: str | None = None  # the whole line the person reads
    ends_with: str | None = None  # a partial reply ending with this note
    kind: str | None = None  # threadwise_errors{kind="model_<kind>"}
    kept: bool = False


OUTCOMES = [
    Outcome(
        "unreachable",
        settings={"openai_base_url": refused_base_url()},
        says=APOLOGY_UNREACHABLE,
        kind="unreachable",
    ),
    Outcome(
        "timeout",
        [Hang(3)],
        settings={"llm_timeout_seconds": 0.5},
        says=APOLOGY_TIMEOUT,
        kind="timeout",
    ),
    Outcome(
        "rate_limited",
        [rate_limited(retry_after=30)],
        settings={"llm_wait_seconds": 1},
        says=APOLOGY_RATE_LIMITED,
        kind="rate_limited",
    ),
    Outcome("server_error", [server_error()], says=APOLOGY_SERVER_ERROR, kind="server_error"),
    Outcome("auth", knobs={"api_key": "another"}, says=APOLOGY_AUTH, kind="auth"),
    Outcome(
        "not_found",
        [Error(404, {"error": {"code": "DeploymentNotFound", "message": "no"}})],
        says=APOLOGY_NOT_FOUND,
        kind="not_found",
    ),
    Outcome(
        "content_filter", [prompt_content_filter()], says=FILTERED_PROMPT, kind="content_filter"
    ),
    Outcome(
        "context_length",
        [context_length_exceeded(), context_length_exceeded()],
        says=APOLOGY_CONTEXT,
        kind="context_length",
    ),
    Outcome(
        "empty_stream",
        [EmptyStream(), Hang(3)],
        settings={"llm_timeout_seconds": 0.5},
        says=APOLOGY_EMPTY_STREAM,
        kind="empty_stream",
    ),
    Outcome(
        "bad_request",
        [Error(400, {"error": {"code": "invalid_value", "message": "bad"}})],
        says=APOLOGY_BAD_REQUEST,
        kind="bad_request",
    ),
    Outcome(
        "interrupted",
        [StreamDies(after_chunks=3, text=LONG)],
        ends_with=INTERRUPTED,
        kind="interrupted",
    ),
    Outcome(
        "reply-deadline",
        [Reply(LONG)],
        settings={"llm_reply_deadline_seconds": 1},
        knobs={"tokens_per_second": 30},
        ends_with=DEADLINE,
        kept=True,
    ),
    Outcome(
        "cap-ignored-by-the-server",
        [Reply(LONG)],
        settings={"max_response_tokens": 16, "llm_cap_field": "max_completion_tokens"},
        knobs={"reads_cap": ("max_tokens",)},
        ends_with=CUT_OFF,
        kept=True,
    ),
]


def errors(svc, kind: str) -> float:
    value = svc.metrics.registry.get_sample_value(
        "threadwise_errors_total", {"kind": f"model_{kind}"}
    )
    return value or 0.0


@pytest.mark.parametrize("case", OUTCOMES, ids=[o.id for o in OUTCOMES])
async def test_each_model_outcome_has_its_own_line_and_metric(make, fake, case: Outcome):
    fake.configure(**case.knobs)
    svc = make(**case.settings)
    fake.script(*case.script)
    reply = RecordingReply()
    m = message("tell me")
    await svc.responder.handle(m, reply)
    assert len(reply.posts) == 1, reply.posts
    if case.says is not None:
        assert reply.posts == [case.says]
    else:
        assert reply.posts[0].endswith("\n\n" + case.ends_with)
        assert reply.posts[0].startswith("word0 word1")
    if case.kind is not None:
        assert errors(svc, case.kind) >= 1  # context_length: the trimmed retry failed too
    stored = await svc.store.history(m.conversation_key)
    assert bool(stored) == case.kept


async def test_a_stream_ending_without_events_on_context_overflow_is_trimmed_and_answered(
    make, fake
):
    # llama-cpp-python's server: a prompt over its context streams nothing (200, no [DONE]).
    svc = make(token_limit=4000, max_response_tokens=100)
    conv = "overflow.1"
    for i in range(6):
        fake.script(Reply(f"answer {i} " + LONG))
        await svc.responder.handle(message(f"question {i}", thread=conv), RecordingReply())
    fake.configure(context_window=600, overflow_as_empty_stream=True)
    fake.reset()
    reply = RecordingReply()
    await svc.responder.handle(message("and now?", thread=conv), reply)
    assert reply.posts == ["Echo: and now?"]
    streamed = [r.body.get("stream", False) for r in fake.chat_requests]
    assert streamed == [True, False, True]  # empty stream, its explanation, the trimmed retry
    history = await svc.store.history(message("", thread=conv).conversation_key)
    assert history[-1].content == "Echo: and now?"


async def test_finish_reason_inside_delta_with_done_is_a_complete_reply_and_kept(make, fake):
    fake.configure(finish_in_delta=True)
    svc = make()
    m = message("remember this")
    await svc.responder.handle(m, RecordingReply())
    fake.script(Reply("second"))
    await svc.responder.handle(message("and?"), RecordingReply())
    sent = [x["content"] for x in fake.last_messages()[1:]]
    assert sent == ["remember this", "Echo: remember this", "and?"]


async def test_without_a_usage_chunk_usage_is_our_count_marked_estimated(make, fake):
    fake.configure(stream_usage=False)
    svc = make(bot_admins="slack:U1")
    await svc.responder.handle(message("count me"), RecordingReply())
    reply = RecordingReply()
    await svc.responder.handle(message("!usage"), reply)
    line = reply.posts[0].splitlines()[1]
    assert "in 1 reply (estimated);" in line, line
    assert "today 0 prompt" not in line


async def test_a_server_tokenizer_counting_more_is_learnt_and_the_budget_follows(make, fake):
    # The server counts 1.5x our tokens and holds 2,000: without learning, each long prompt
    # would overflow it (and be retried trimmed); after one observed turn, prompts fit.
    fake.configure(prompt_token_scale=1.5, context_window=2000)
    svc = make(token_limit=2000, max_response_tokens=100)
    for i in range(8):
        fake.script(Reply(f"answer {i} " + LONG[:600]))
        reply = RecordingReply()
        await svc.responder.handle(message(f"question {i} " + LONG[:600], thread="ratio.1"), reply)
        assert reply.posts and reply.posts[0].startswith(f"answer {i}")
    assert svc.responder.answerer.token_ratio.ratio("gpt-4o") == pytest.approx(1.5, abs=0.02)
    assert len(fake.chat_requests) == 8  # not one context-length error, not one retry


async def test_the_thinking_status_is_refreshed_while_the_model_has_not_started(
    make, fake, monkeypatch
):
    monkeypatch.setattr(pacing, "STATUS_REFRESH_SECONDS", 0.05)
    fake.configure(first_token_delay=0.6)
    svc = make()
    reply = RecordingReply()
    await svc.responder.handle(message("slow one"), reply)
    assert reply.posts == ["Echo: slow one"]
    assert reply.typing_calls >= 3
