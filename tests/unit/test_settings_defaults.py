"""A default never makes a valid configuration fail; only an impossible explicit value does.

PROMPT_MAX_TOKENS defaults to 2000, or to half of what TOKEN_LIMIT and MAX_RESPONSE_TOKENS leave
a system prompt when that is less; set explicitly, it is refused only when a system prompt that
long would leave no room for a user message.
"""

from __future__ import annotations

import pytest

from bot.settings import SettingsError, load_settings
from bot.tokens import TokenCounter
from bot.trimming import (
    SMALLEST_MESSAGE,
    SYSTEM_FRAMING,
    StoredMessage,
    fit_prompt,
    largest_prompt,
)
from tests.e2e.test_cli import run
from tests.support.fakes.fake_openai import FakeOpenAI

SMALL_LIMITS = {"TOKEN_LIMIT": "1200", "MAX_RESPONSE_TOKENS": "200"}


@pytest.fixture
def env(monkeypatch):
    """Settings from these variables only (no developer .env, no inherited settings)."""
    monkeypatch.chdir("/")
    for name in ("TOKEN_LIMIT", "MAX_RESPONSE_TOKENS", "PROMPT_MAX_TOKENS"):
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


async def test_chat_starts_and_answers_with_only_a_small_token_limit_set(tmp_path):
    async with FakeOpenAI() as fake:
        env = {
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "k",
            "AZURE_OPENAI_DEPLOYMENT": "d",
            **SMALL_LIMITS,
        }
        code, out, err = await run(["chat"], env, "hello\n", tmp_path)
    assert code == 0, err
    assert "Echo: hello" in out


async def test_an_explicit_prompt_max_that_cannot_fit_stops_start_up_with_one_line(tmp_path):
    env = {
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1/",
        "AZURE_OPENAI_DEPLOYMENT": "d",
        "PROMPT_MAX_TOKENS": "2000",
        **SMALL_LIMITS,
    }
    code, _, err = await run(["chat"], env, "", tmp_path)
    assert code == 2
    assert err.startswith("threadwise: PROMPT_MAX_TOKENS: 2000 leaves no room"), err
    assert err.strip().count("\n") == 0


def test_unset_prompt_max_follows_small_limits_and_leaves_a_message_as_much_room(env):
    env(**SMALL_LIMITS)
    settings = load_settings()
    largest = largest_prompt(1200, 200)
    assert settings.prompt_max_tokens == (largest + 1) // 2
    assert largest - settings.prompt_max_tokens <= settings.prompt_max_tokens <= largest


def test_unset_prompt_max_is_2000_when_the_limits_have_room_for_it(env):
    assert load_settings().prompt_max_tokens == 2000
    env(TOKEN_LIMIT="4112", MAX_RESPONSE_TOKENS="100")  # twice 2000 beside framing and a message
    assert load_settings().prompt_max_tokens == 2000
    env(TOKEN_LIMIT="4110")
    assert load_settings().prompt_max_tokens == 1999


def test_an_explicit_prompt_max_that_fits_is_kept_as_set(env):
    env(PROMPT_MAX_TOKENS="900", **SMALL_LIMITS)
    assert load_settings().prompt_max_tokens == 900
    env(PROMPT_MAX_TOKENS="5000", TOKEN_LIMIT="16384", MAX_RESPONSE_TOKENS="1024")
    assert load_settings().prompt_max_tokens == 5000  # above the default's cap, and fits


def test_the_largest_explicit_prompt_max_is_accepted_and_one_more_refused(env):
    largest = largest_prompt(1200, 200)
    env(PROMPT_MAX_TOKENS=str(largest), **SMALL_LIMITS)
    assert load_settings().prompt_max_tokens == largest
    env(PROMPT_MAX_TOKENS=str(largest + 1))
    with pytest.raises(SettingsError, match=rf"^PROMPT_MAX_TOKENS: .* at most {largest} "):
        load_settings()


def test_limits_that_hold_no_prompt_and_message_name_max_response_tokens(env):
    env(TOKEN_LIMIT="1024", MAX_RESPONSE_TOKENS="1020")
    with pytest.raises(SettingsError, match=r"^MAX_RESPONSE_TOKENS: must leave room"):
        load_settings()
    env(TOKEN_LIMIT="1024", MAX_RESPONSE_TOKENS="1024")
    with pytest.raises(SettingsError, match=r"^MAX_RESPONSE_TOKENS:"):
        load_settings()


@pytest.mark.parametrize(("token_limit", "reply"), [(1200, 200), (64, 40), (14, 1), (16384, 1024)])
def test_the_largest_prompt_with_the_smallest_message_fits_exactly(token_limit, reply):
    """The boundary the settings check draws is the one the responder's fitting draws."""
    counter = TokenCounter()
    assert counter.message_tokens("system", "a") == counter.count("a") + SYSTEM_FRAMING
    assert counter.message_tokens("user", "a") == SMALLEST_MESSAGE
    user = StoredMessage("user", "a", SMALLEST_MESSAGE)
    largest = largest_prompt(token_limit, reply)
    fits = StoredMessage("system", "…", largest + SYSTEM_FRAMING)
    too_long = StoredMessage("system", "…", largest + 1 + SYSTEM_FRAMING)
    assert fit_prompt(fits, [], user, token_limit, reply) is not None
    assert fit_prompt(too_long, [], user, token_limit, reply) is None
