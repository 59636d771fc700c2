"""Feedback in the core: votes from clicks, suggested prompts, the settings, FEEDBACK=false."""

from __future__ import annotations

import pytest

from bot.app import build_service
from bot.feedback import Click, Feedback
from bot.messages import AnswerInfo
from bot.metrics import Metrics
from bot.prompts import Prompts
from bot.settings import SettingsError, load_settings
from bot.store import MemoryStore
from bot.suggestions import DEFAULT_SUGGESTIONS, Suggestion, parse_json, parse_lines
from bot.tokens import TokenCounter


def feedback(store: MemoryStore) -> Feedback:
    prompts = Prompts(store, TokenCounter("o200k_base"), "be brief", 2000)
    return Feedback(store=store, prompts=prompts, metrics=Metrics(), deployment="gpt-4o")


def click(value: str = "up", **kw) -> Click:
    base = dict(
        platform="slack", workspace="T1", channel="C1", thread="1.0", answer="2.0", user_id="U1"
    )
    return Click(**{**base, **kw}, value=value)


async def test_a_click_without_answer_info_takes_the_prompt_scope_in_effect_now():
    store = MemoryStore(history_budget=100, history_ttl=60)
    fb = feedback(store)
    await fb.prompts.set("slack:T1", "workspace prompt", "slack:U9", "Admin")
    await fb.vote(click())
    [v] = await store.recent_votes(0, 10)
    assert (v.prompt_scope, v.deployment, v.conversation) == (
        "slack:T1",
        "gpt-4o",
        "slack:T1:C1:1.0",
    )
    assert fb.metrics.votes.labels("slack", "up")._value.get() == 1


async def test_a_click_carrying_answer_info_keeps_it_and_comments_are_bounded():
    store = MemoryStore(history_budget=100, history_ttl=60)
    fb = feedback(store)
    await fb.vote(click("down", comment="x" * 5000, info=AnswerInfo("gpt-5", "slack:T1:C1")))
    await fb.vote(click("up"))
    [v] = await store.recent_votes(0, 10)
    assert v.value == "up" and v.prompt_scope == "default"
    assert fb.metrics.votes_changed.labels("slack")._value.get() == 1
    with pytest.raises(ValueError):
        await fb.vote(click("meh"))


def test_suggested_prompts_setting_and_chat_form():
    assert parse_json("") == DEFAULT_SUGGESTIONS and len(DEFAULT_SUGGESTIONS) == 3
    assert parse_json('[{"title": "A", "message": "do a"}]') == (Suggestion("A", "do a"),)
    assert parse_lines("• Plan | plan my day\n\nJust ask") == (
        Suggestion("Plan", "plan my day"),
        Suggestion("Just ask", "Just ask"),
    )
    for bad in (
        "{}",
        "[1]",
        '[{"title": ""}]',
        "not json",
        "[" + ",".join(['{"title":"a","message":"b"}'] * 5) + "]",
    ):
        with pytest.raises(ValueError):
            parse_json(bad)


def test_a_bad_suggested_prompts_setting_stops_start_up_naming_it(monkeypatch):
    monkeypatch.setenv("SLACK_SUGGESTED_PROMPTS", "[oops")
    with pytest.raises(SettingsError, match="SLACK_SUGGESTED_PROMPTS"):
        load_settings()


def test_feedback_false_turns_votes_and_buttons_off(monkeypatch):
    monkeypatch.setenv("FEEDBACK", "false")
    service = build_service(load_settings(), with_model=False)
    assert service.feedback is None
    monkeypatch.setenv("FEEDBACK", "true")
    assert build_service(load_settings(), with_model=False).feedback is not None


def test_feedback_export_days_are_bounded_by_how_long_votes_are_kept():
    import argparse

    from bot.feedback_cli import MAX_DAYS, _days

    assert _days("7") == 7 and _days(str(MAX_DAYS)) == MAX_DAYS
    for bad in ("0", "36", "x", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _days(bad)
