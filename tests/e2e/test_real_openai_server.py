"""Against a real OpenAI-compatible model server, when one is running (llama.cpp's or
llama-cpp-python's server, Ollama, vLLM, …): what the fake model cannot prove.

    THREADWISE_REAL_OPENAI_URL=http://127.0.0.1:8080/v1/ THREADWISE_REAL_OPENAI_MODEL=local \\
      pytest tests/e2e/test_real_openai_server.py     # THREADWISE_REAL_OPENAI_KEY if it needs one

Skipped, saying so, when THREADWISE_REAL_OPENAI_URL is not set.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import pytest

from bot.app import build_service
from bot.doctor_model import check_model
from bot.messages import IncomingMessage
from bot.replies import CUT_OFF, EMPTY_REPLY
from bot.settings import Settings
from tests.support.recording import RecordingReply

URL = os.environ.get("THREADWISE_REAL_OPENAI_URL")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not URL,
        reason="no real model server: set THREADWISE_REAL_OPENAI_URL to an OpenAI-compatible "
        "base URL (e.g. llama.cpp's server at http://127.0.0.1:8080/v1/) to run these",
    ),
]
_ids = itertools.count()


def settings(**kw) -> Settings:
    args = dict(
        openai_base_url=URL,
        azure_openai_api_key=os.environ.get("THREADWISE_REAL_OPENAI_KEY", "no-key"),
        azure_openai_deployment=os.environ.get("THREADWISE_REAL_OPENAI_MODEL", "local"),
        token_limit=int(os.environ.get("THREADWISE_REAL_OPENAI_CONTEXT", "2048")),
        max_response_tokens=64,
        llm_timeout_seconds=120,
    )
    args.update(kw)
    return Settings(**args)


def message(text: str) -> IncomingMessage:
    return IncomingMessage(
        platform="console",
        workspace="local",
        channel="real",
        thread=f"t{next(_ids)}",
        user_id="tester",
        user_name="Tester",
        text=text,
        message_id=f"m{next(_ids)}",
        is_dm=True,
    )


async def test_a_real_server_answers_and_the_turn_is_kept_with_usage():
    svc = build_service(settings(bot_admins="console:tester"))
    try:
        m = message("Say hello in five words.")
        reply = RecordingReply()
        await svc.responder.handle(m, reply)
        assert len(reply.posts) == 1 and reply.posts[0].strip()
        assert reply.posts[0] != EMPTY_REPLY and not reply.posts[0].startswith("Sorry")
        assert len(await svc.store.history(m.conversation_key)) == 2
        usage = RecordingReply()
        await svc.responder.handle(dataclasses.replace(m, text="!usage", message_id="u1"), usage)
        assert "0 prompt + 0 completion" not in usage.posts[0]
    finally:
        await svc.close()


async def test_a_real_server_is_held_to_the_reply_cap():
    svc = build_service(settings(max_response_tokens=16))
    try:
        reply = RecordingReply()
        await svc.responder.handle(message("Count from one to two hundred in words."), reply)
        text = reply.posts[0]
        body = text.removesuffix("\n\n" + CUT_OFF)
        assert svc.counter.count(body) <= 16 + 8, text  # whatever field the server reads
    finally:
        await svc.close()


async def test_doctor_reaches_a_real_server():
    checks = await check_model(settings())
    assert checks[0].ok, checks[0].fix
