"""Which Slack events the bot answers, where the answer goes, and the text the model sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.slack.events import mentioned_users, mentions, readable_text, route

EVENTS = json.loads(
    (Path(__file__).parents[1] / "support" / "fixtures" / "slack" / "events.json").read_text()
)
ROOT = "1700000100.000100"

# name → (kind, reason or expected thread, is_dm, mentions_bot)
ANSWERED = {
    "channel_mention": ("app_mention", ROOT, False, True),
    "channel_mention_in_thread": ("app_mention", ROOT, False, True),
    "channel_message_with_mention": ("message", ROOT, False, True),
    "private_channel_message_with_mention": ("message", "1700000150.000100", False, True),
    "thread_reply_without_mention": ("message", ROOT, False, False),
    "thread_broadcast": ("message", ROOT, False, False),
    "file_share_with_mention": ("message", "1700000320.000300", False, True),
    "dm_top_level": ("dm", None, True, True),
    "dm_in_thread": ("dm", "1700000500.000500", True, True),
    "dm_with_mention": ("dm", None, True, True),
    # A file shared in the bot's thread without a word: the file is the message.
    "file_in_thread_without_text": ("message", ROOT, False, False),
}

IGNORED = {
    "top_level_channel_chatter": "no_mention",
    "thread_root_itself": "no_mention",
    "group_dm_chatter": "no_mention",
    "bot_message_subtype": "bot",
    "other_bot_with_user": "bot",
    "other_bot_mention": "bot",
    "own_message": "bot",
    "own_message_in_dm": "self",
    "message_changed": "hidden",
    "message_deleted": "hidden",
    "message_replied": "hidden",
    "channel_join": "subtype:channel_join",
    "bot_added_to_channel": "self",
    "channel_topic": "subtype:channel_topic",
    "me_message": "subtype:me_message",
    "huddle_thread": "subtype:huddle_thread",
    "no_user": "no_user",
    "no_channel": "malformed",
}


def decide(name: str, *, followups: bool = True):
    return route(EVENTS[name], bot_user_id="UBOT", bot_id="BBOT", thread_followups=followups)


def test_every_fixture_is_in_the_table():
    assert set(EVENTS) - {"_comment"} == set(ANSWERED) | set(IGNORED)


@pytest.mark.parametrize("name", sorted(ANSWERED))
def test_answered_events_route_to_the_right_thread(name):
    kind, thread, is_dm, mentions_bot = ANSWERED[name]
    d = decide(name)
    assert d.answer, d.reason
    assert (d.kind, d.thread, d.is_dm, d.mentions_bot) == (kind, thread, is_dm, mentions_bot)


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_ignored_events_are_dropped_with_a_reason(name):
    d = decide(name)
    assert not d.answer
    assert d.kind == "ignored"
    assert d.reason == IGNORED[name]


def test_thread_followups_off_drops_unmentioned_thread_replies_but_not_mentions():
    assert decide("thread_reply_without_mention", followups=False).reason == "followups_off"
    assert decide("channel_mention_in_thread", followups=False).answer
    assert decide("dm_in_thread", followups=False).answer


def test_message_edit_is_ignored_even_if_the_bot_is_mentioned_in_the_new_text():
    event = dict(EVENTS["message_changed"])
    event.pop("hidden")
    assert decide_event(event).reason == "subtype:message_changed"


def test_an_empty_thread_reply_without_files_is_ignored():
    event = dict(EVENTS["file_in_thread_without_text"])
    event.pop("files")
    assert decide_event(event).reason == "empty"


def decide_event(event):
    return route(event, bot_user_id="UBOT", bot_id="BBOT", thread_followups=True)


def test_without_channel_type_a_d_channel_is_a_dm():
    event = dict(EVENTS["dm_top_level"])
    event.pop("channel_type")
    assert decide_event(event).is_dm


def test_mention_and_message_events_for_one_post_agree_on_the_thread():
    a = decide("channel_mention")
    b = decide("channel_message_with_mention")
    assert a.thread == b.thread == EVENTS["channel_mention"]["ts"]


# -- text ------------------------------------------------------------------------------------

TEXT_TABLE = [
    ("<@UBOT> what is Redis?", "what is Redis?"),
    ("<@UBOT>: do it", "do it"),
    ("<@UBOT|threadwise>, hello", "hello"),
    ("hey <@UBOT>, you there?", "hey, you there?"),
    ("ask <@UBOT> now", "ask now"),
    ("<@UBOT>", ""),
    ("ping <@U2> and <@U3|bob>", "ping @Ann Lee and @bob"),
    ("unknown <@U7>", "unknown @U7"),
    ("in <#C1|general> and <#C2>", "in #general and #C2"),
    ("<!here> <!channel> <!everyone>", "@here @channel @everyone"),
    ("<!subteam^S1|@devs> <!subteam^S2>", "@devs @S2"),
    ("<!date^1392734382^{date}|Feb 18, 2014>", "Feb 18, 2014"),
    ("see <https://example.com/a?b=1&amp;c=2>", "see https://example.com/a?b=1&c=2"),
    ("see <https://example.com|example.com>", "see https://example.com"),
    ("see <https://example.com/docs|the docs>", "see [the docs](https://example.com/docs)"),
    ("mail <mailto:a@b.co|a@b.co>", "mail a@b.co"),
    ("a &lt;b&gt; &amp;&amp; c", "a <b> && c"),
    ("&amp;lt; stays literal", "&lt; stays literal"),
    ("line one\n<@UBOT> line two", "line one\nline two"),
]


@pytest.mark.parametrize(("wire", "expected"), TEXT_TABLE)
def test_wire_text_becomes_what_the_person_wrote(wire, expected):
    got = readable_text(wire, bot_user_id="UBOT", names={"U2": "Ann Lee"})
    assert got == expected.strip()


def test_mentioned_users_lists_unlabelled_users_once_without_the_bot():
    text = "<@UBOT> <@U2> <@U3|bob> <@U2> <@W4>"
    assert mentioned_users(text, exclude="UBOT") == ["U2", "W4"]


def test_mentions_detects_both_mention_forms():
    assert mentions("hi <@UBOT>", "UBOT")
    assert mentions("hi <@UBOT|tw>", "UBOT")
    assert not mentions("hi <@UBOTX>", "UBOT")
    assert not mentions("hi", None)
