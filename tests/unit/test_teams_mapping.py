"""Teams activities become the right `IncomingMessage` (docs/spec.md §2), from real payloads."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from microsoft_agents.activity import Activity

from adapters.teams.mapping import clean_text, to_incoming
from tests.support.fixtures.teams.harness import APP_ID, BOT_ID, TENANT, load


def incoming(name: str, **changes):
    return to_incoming(Activity.model_validate(load(name, **changes)), APP_ID)


def test_personal_chat_message_is_a_dm_keyed_by_tenant_and_conversation():
    raw = load("personal_message")
    msg = incoming("personal_message")
    assert msg is not None
    assert msg.platform == "teams"
    assert msg.workspace == TENANT
    assert msg.channel == raw["conversation"]["id"]
    assert msg.thread is None
    assert msg.user_id == "6a1c5f0e-7b2d-4c3e-9f8a-1b2c3d4e5f60"  # aadObjectId, not 29:…
    assert msg.principal == "teams:6a1c5f0e-7b2d-4c3e-9f8a-1b2c3d4e5f60"
    assert msg.user_name == "Megan Bowen"
    assert msg.text == "What's the difference between a process and a thread?"
    assert msg.message_id == msg.event_id == "1763630142123"
    assert msg.is_dm and msg.mentions_bot


def test_group_chat_mention_is_removed_and_marks_the_message_for_the_bot():
    msg = incoming("group_chat_mention")
    assert msg is not None
    assert msg.text == "can you draft an agenda for Friday's retro?"
    assert msg.channel == "19:2d1f8e4b6c0a4f3e9b7d5c1a8e6f4d2b@thread.v2"
    assert not msg.is_dm and msg.mentions_bot
    assert msg.user_id == "0f3c2b1a-9e8d-4c7b-a6f5-e4d3c2b1a0f9"


def test_channel_message_keeps_the_reply_chain_and_names_other_people():
    msg = incoming("channel_mention")
    assert msg is not None
    # The conversation id carries the reply chain's root: that is the conversation key.
    assert msg.channel.endswith(";messageid=1763631845402")
    assert msg.conversation_key == f"teams:{TENANT}:{msg.channel}"
    assert msg.text == "summarise the rollout checklist for @Adele Vance"
    assert not msg.is_dm and msg.mentions_bot


def test_channel_message_without_a_bot_mention_is_ignored():
    raw = load("channel_mention")
    raw["text"] = "just chatting, <at>Adele Vance</at>"
    raw["entities"] = [e for e in raw["entities"] if e.get("mentioned", {}).get("id") != BOT_ID]
    assert to_incoming(Activity.model_validate(raw), APP_ID) is None


def test_group_chat_message_without_a_mention_is_ignored():
    raw = load("group_chat_mention", text="lunch?", entities=[])
    assert to_incoming(Activity.model_validate(raw), APP_ID) is None


def test_the_bots_own_and_other_bots_messages_are_ignored():
    own = load("personal_message", **{"from": {"id": BOT_ID, "name": "Threadwise"}})
    assert to_incoming(Activity.model_validate(own), APP_ID) is None
    other = load("personal_message", **{"from": {"id": "28:other-bot", "name": "Other"}})
    assert to_incoming(Activity.model_validate(other), APP_ID) is None


def test_non_message_activities_are_not_messages():
    assert incoming("conversation_update_bot_added") is None


def test_mention_only_message_gives_empty_text_for_the_core_to_answer():
    msg = incoming("group_chat_mention", text="<at>Threadwise</at>")
    assert msg is not None and msg.text == "" and msg.mentions_bot


def test_mention_in_the_middle_leaves_one_space_and_keeps_line_breaks():
    msg = incoming(
        "group_chat_mention", text="Hey <at>Threadwise</at>   what is this?\n\n    indented code"
    )
    assert msg is not None
    assert msg.text == "Hey what is this?\n\n    indented code"


def test_user_without_aad_object_id_falls_back_to_channel_account_id():
    msg = incoming("personal_message", **{"from": {"id": "29:abc", "name": "Guest"}})
    assert msg is not None and msg.user_id == "29:abc"


def test_tenant_comes_from_conversation_when_channel_data_lacks_it():
    msg = incoming("personal_message", channelData={})
    assert msg is not None and msg.workspace == TENANT


def test_mention_by_recipient_id_works_without_app_id_as_in_anonymous_mode():
    raw = load("group_chat_mention")
    activity = Activity.model_validate(raw)
    text, mentioned = clean_text(activity, None)
    assert mentioned and text == "can you draft an agenda for Friday's retro?"


_words = st.text(
    alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)), max_size=40
)


@given(before=_words, after=_words)
def test_bot_mention_never_reaches_the_model_whatever_surrounds_it(before, after):
    raw = load("group_chat_mention", text=f"{before}<at>Threadwise</at>{after}")
    text, mentioned = clean_text(Activity.model_validate(raw), APP_ID)
    assert mentioned
    assert "<at>" not in text and "Threadwise" not in text.replace(before, "").replace(after, "")
    # The words around the mention survive (modulo surrounding whitespace).
    squash = lambda s: re.sub(r"\s+", "", s.replace("\u00a0", ""))  # noqa: E731
    assert squash(text) == squash(before + after)
