"""Every pass over a message's text is linear (issue 12 §2): hostile 40,000-character texts are
cleaned, converted, split and defused quickly, cleaning time grows linearly with length, and
the linear rewrites of the old patterns give exactly what the patterns gave.

The time bounds are the issue's (50 ms for a 40,000-character message, best of 3) or generous
("well bounded": what a quadratic pass would need seconds or minutes for).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from microsoft_agents.activity import Activity

from adapters.slack.events import _tidy_bot_mentions, mentioned_users, readable_text
from adapters.slack.mentions import MentionGuard, defuse_mentions
from adapters.slack.mrkdwn import _emphasis, _heading, to_mrkdwn
from adapters.teams.mapping import _at_tags, _remove_mention, clean_text
from adapters.text import split_markdown
from bot.commands.prompt import _body
from tests.support.fixtures.teams.harness import APP_ID, load

CHARS = 40_000
BUDGET = 0.050  # issue 12: a 40,000-character message cleaned in under 50 ms
BOUNDED = 0.5  # model text: a quadratic pass takes seconds to minutes at this size
BOT_AT = "<at>Threadwise</at>"


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def filled(unit: str, head: str = "<@UBOT> ", chars: int = CHARS) -> str:
    return head + unit * ((chars - len(head) - 1) // len(unit)) + "x"


# Slack wire text; the Teams cleaner gets it with the bot's `<at>` mention for `<@UBOT>`.
HOSTILE = {
    "spaces after a mention": filled(" ", "hi <@UBOT> "),
    "spaces before a mention": "x" + " " * (CHARS - 10) + " <@UBOT>",
    "spaces between words": filled(" ", "<@UBOT> hi"),
    "spaces and tabs": filled(" \t", "hi <@UBOT> "),
    "user mention runs": filled("<@U123>"),
    "bot mentions and spaces": filled("<@UBOT>  ", ""),
    "at-tag runs": filled("<at>x</at>"),
    "unclosed at-tags": filled("<at>"),
    "backticks": filled("`"),
    "asterisks": filled("*"),
    "underscores": filled("_"),
    "tildes": filled("~"),
    "brackets": filled("["),
    "parentheses": filled("("),
    "quote marks": filled(">"),
    "blank lines": filled("\n"),
}


def slack_clean(text: str) -> Callable[[], object]:
    return lambda: readable_text(text, bot_user_id="UBOT", names={})


def teams_clean(text: str) -> Callable[[], object]:
    activity = Activity.model_validate(
        load("group_chat_mention", text=text.replace("<@UBOT>", BOT_AT))
    )
    return lambda: clean_text(activity, APP_ID)


@pytest.mark.parametrize("shape", HOSTILE)
def test_hostile_slack_message_is_cleaned_in_under_50_ms(shape):
    assert best_of(slack_clean(HOSTILE[shape])) < BUDGET


@pytest.mark.parametrize("shape", HOSTILE)
def test_hostile_teams_message_is_cleaned_in_under_50_ms(shape):
    assert best_of(teams_clean(HOSTILE[shape])) < BUDGET


def test_thousands_of_distinct_mentions_are_listed_for_lookup_in_linear_time():
    text = "".join(f"<@U{i:06d}>" for i in range(CHARS // 10))
    assert best_of(lambda: mentioned_users(text, exclude="UBOT")) < BUDGET


def test_command_text_after_many_blank_lines_is_found_in_linear_time():
    rest = "\n" * 200_000 + "You are terse."
    assert _body(rest) == "You are terse."
    assert best_of(lambda: _body(rest)) < BUDGET


# -- model text: mrkdwn, splitting, defusing --------------------------------------------------

MODEL_HOSTILE = {
    **HOSTILE,
    "backtick words": filled("` "),
    "double backtick words": filled("``a "),
    "asterisk words": filled("*a "),
    "bold words": filled("**a "),
    "bold italic words": filled("***a "),
    "underscore words": filled("_a "),
    "double underscore words": filled("__a "),
    "strike words": filled("~~a "),
    "link openings": filled("[a]("),
    "nested quotes": filled(">  "),
    "heading hashes": filled("#", "# "),
    "broadcast runs": filled("<!here>"),
    "entity mentions": filled("&lt;!here&gt;"),
}


def _utf16(text: str) -> int:
    return len(text.encode("utf-16-le"))


@pytest.mark.parametrize("shape", MODEL_HOSTILE)
def test_hostile_model_text_converts_to_mrkdwn_in_bounded_time(shape):
    assert best_of(lambda: to_mrkdwn(MODEL_HOSTILE[shape])) < BOUNDED


@pytest.mark.parametrize("shape", MODEL_HOSTILE)
def test_hostile_model_text_is_split_into_messages_in_bounded_time(shape):
    text = MODEL_HOSTILE[shape]
    assert best_of(lambda: split_markdown(text, 2_800)) < BOUNDED
    assert best_of(lambda: split_markdown(text * 3, 80_000, length=_utf16)) < BOUNDED


@pytest.mark.parametrize("shape", MODEL_HOSTILE)
def test_hostile_model_text_is_defused_in_bounded_time_whole_or_streamed(shape):
    text = MODEL_HOSTILE[shape]

    def streamed() -> str:
        guard = MentionGuard()
        out = [guard.feed(text[i : i + 4]) for i in range(0, len(text), 4)]
        return "".join(out) + guard.flush()

    assert best_of(lambda: defuse_mentions(text)) < BUDGET
    assert best_of(streamed) < BOUNDED


# -- growth ------------------------------------------------------------------------------------

UNITS = [" ", " \t", "<@UBOT> ", "<@U1>", "<at>", "<at>x</at>", "`", "*", "_", "~", "[", ">"]
CLEANERS = {"slack": slack_clean, "teams": teams_clean}


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
@given(
    unit=st.sampled_from(UNITS)
    | st.text(alphabet=" \t\n<>@`*_~[]()!#:,at/U", min_size=1, max_size=6),
    cleaner=st.sampled_from(sorted(CLEANERS)),
)
def test_cleaning_time_grows_linearly_with_length(unit, cleaner):
    n = 4_000
    small = CLEANERS[cleaner](filled(unit, "hi <@UBOT> ", n))
    large = CLEANERS[cleaner](filled(unit, "hi <@UBOT> ", 8 * n))
    t_small, t_large = best_of(small, 5), best_of(large, 5)
    # 8x the text: linear is 8x the time, quadratic 64x; a floor keeps timer noise out.
    assert t_large < 24 * max(t_small, 50e-6), (t_small, t_large)


# -- the same results as the patterns they replace --------------------------------------------


def old_tidy(out: str) -> str:
    out = re.sub(r"^\s*(?:\x00[\s,:;]*)+", "", out)
    out = re.sub(r"(?m)^[ \t]*(?:\x00[ \t,:;]*)+", "", out)
    out = re.sub(r"[ \t]*\x00(?=[,.;:!?])", "", out)
    out = re.sub(r"[ \t]*\x00[ \t]*", " ", out)
    return out.replace("\x00", "")


@given(st.text(alphabet=" \t\n\r\x0b\u00a0\x00,.:;!?a", max_size=30))
def test_slack_cleaner_tidies_the_bot_mention_exactly_as_the_old_patterns(out):
    assert _tidy_bot_mentions(out) == old_tidy(out)


_TEAMS_PIECES = [" ", "\t", "a", "A", "<at>", "</at>", "<AT>", "</At>", "x", "\n", "ſ", "s", "K"]
_teams_text = st.lists(st.sampled_from(_TEAMS_PIECES), max_size=14).map("".join)


@given(text=_teams_text, markup=_teams_text.filter(bool))
def test_teams_mention_removal_is_exactly_the_old_pattern(text, markup):
    old = re.sub(r"[ \t]*" + re.escape(markup) + r"[ \t]*", " ", text, flags=re.I)
    assert _remove_mention(text, markup) == old


@given(_teams_text)
def test_teams_at_tags_are_replaced_exactly_as_by_the_old_pattern(text):
    at_tag = re.compile(r"<at>(.*?)</at>", re.IGNORECASE | re.DOTALL)
    assert _at_tags(text, lambda s: "@" + s.strip()) == at_tag.sub(
        lambda m: "@" + m.group(1).strip(), text
    )


_OLD_EMPHASIS = [
    (r"(?<![\w*])\*\*\*(?=\S)(?P<t>.+?)(?<=\S)\*\*\*(?![\w*])", "\x01\x02", "\x02\x01"),
    (r"(?<!\*)\*\*(?=\S)(?P<t>.+?)(?<=\S)\*\*(?!\*)", "\x01", "\x01"),
    (r"(?<![\w_])__(?=\S)(?P<t>.+?)(?<=\S)__(?![\w_])", "\x01", "\x01"),
    (r"(?<![\w*])\*(?=[^\s*])(?P<t>.+?)(?<=[^\s*])\*(?![\w*])", "\x02", "\x02"),
    (r"(?<![\w_])_(?=[^\s_])(?P<t>.+?)(?<=[^\s_])_(?![\w_])", "\x02", "\x02"),
    (r"(?<!~)~~(?=\S)(?P<t>.+?)(?<=\S)~~(?!~)", "~", "~"),
]


def old_emphasis(text: str) -> str:
    for pattern, left, right in _OLD_EMPHASIS:
        text = re.sub(pattern, lambda m, a=left, b=right: a + m["t"] + b, text)
    return text.replace("\x01", "*").replace("\x02", "_")


@given(st.lists(st.sampled_from(["*", "_", "~", " ", "a", "\n", "*a", "b_", "~~"])).map("".join))
def test_mrkdwn_emphasis_is_exactly_what_the_old_patterns_gave(text):
    assert _emphasis(text) == old_emphasis(text)


@given(st.text(alphabet=" \t#ax", max_size=16))
def test_mrkdwn_heading_title_is_exactly_what_the_old_pattern_found(line):
    old = re.match(r"^[ \t]{0,3}#{1,6}[ \t]+(?P<text>.*?)[ \t]*#*[ \t]*$", line)
    assert _heading(line) == (old["text"].strip() if old else None)
