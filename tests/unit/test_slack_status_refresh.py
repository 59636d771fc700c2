"""Slack's "is thinking…" status while a slow model has not started (Slack clears a status
after two minutes without a message): a turn through the core with the real slack_sdk client
against the fake Web API and the real openai SDK against the fake model."""

from __future__ import annotations

import adapters.slack.reply as slack_reply
from adapters.slack.api import make_client
from adapters.slack.reply import SlackReplies, SlackReplyTarget
from bot import pacing
from bot.app import build_service
from bot.messages import IncomingMessage
from bot.metrics import Metrics
from bot.settings import Settings
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.fakes.fake_slack import FakeSlack

ROOT = "1700000100.000100"


async def test_the_status_is_set_again_until_the_first_words_arrive(monkeypatch):
    monkeypatch.setattr(pacing, "STATUS_REFRESH_SECONDS", 0.05)
    monkeypatch.setattr(slack_reply, "TYPING_REFRESH_SECONDS", 0.2)
    async with FakeSlack(users={"U1": "Ann"}) as slack, FakeOpenAI(first_token_delay=1.2) as model:
        svc = build_service(
            Settings(
                openai_base_url=model.base_url,
                azure_openai_api_key="k",
                azure_openai_deployment="gpt-4o",
            )
        )
        replies = SlackReplies(
            make_client(slack.token, slack.api_url), Metrics(), stream_interval=0.05
        )
        target = SlackReplyTarget(
            replies, channel="C1", thread_ts=ROOT, message_ts=ROOT, team_id="T1", user_id="U1"
        )
        message = IncomingMessage(
            platform="slack",
            workspace="T1",
            channel="C1",
            thread=ROOT,
            user_id="U1",
            user_name="Ann",
            text="slow question",
            message_id="m-status-1",
        )
        try:
            await svc.responder.handle(message, target)
        finally:
            await svc.close()
    methods = slack.methods()
    first_text = next(i for i, m in enumerate(methods) if m.startswith("chat."))
    before = methods[:first_text]
    assert before.count("assistant.threads.setStatus") >= 3, methods
    assert "assistant.threads.setStatus" not in methods[first_text:]
