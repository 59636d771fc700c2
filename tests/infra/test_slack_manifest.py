"""infra/slack/manifest.yaml grants what the adapter uses, and no more than it needs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from adapters.slack.adapter import EVENTS_PATH

yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) reads the manifest")
MANIFEST = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "infra" / "slack" / "manifest.yaml").read_text()
)

# Every Web API method the adapter calls, and the bot scope Slack checks for it.
METHOD_SCOPES = {
    "auth.test": None,
    "users.info": "users:read",
    "chat.postMessage": "chat:write",
    "chat.update": "chat:write",
    "chat.delete": "chat:write",
    "chat.startStream": "chat:write",
    "chat.appendStream": "chat:write",
    "chat.stopStream": "chat:write",
    "assistant.threads.setStatus": "chat:write",
    "reactions.add": "reactions:write",
    "reactions.remove": "reactions:write",
    "chat.postEphemeral": "chat:write",
    "assistant.threads.setSuggestedPrompts": "assistant:write",
    "assistant.threads.setTitle": "assistant:write",
    "conversations.info": "channels:read",
    "views.publish": None,
    "files.info": "files:read",  # and downloading url_private_download (adapters/slack/files.py)
}
# Every event the adapter listens to, and the scope it needs.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.mpim": "mpim:history",
    "message.im": "im:history",
    "assistant_thread_started": "assistant:write",
    "assistant_thread_context_changed": "assistant:write",
    "app_home_opened": None,
}


def scopes() -> set[str]:
    return set(MANIFEST["oauth_config"]["scopes"]["bot"])


def test_every_method_and_event_the_adapter_uses_has_its_scope():
    needed = {s for s in METHOD_SCOPES.values() if s} | {s for s in EVENT_SCOPES.values() if s}
    needed |= {"commands", "im:read", "im:write", "groups:read"}  # groups: private channels' names
    assert needed == scopes()


def test_events_are_the_ones_the_listeners_handle():
    assert set(MANIFEST["settings"]["event_subscriptions"]["bot_events"]) == set(EVENT_SCOPES)


def test_slash_command_and_events_go_to_the_served_route():
    [command] = MANIFEST["features"]["slash_commands"]
    assert command["command"] == "/threadwise"
    assert urlparse(command["url"]).path == EVENTS_PATH
    assert urlparse(MANIFEST["settings"]["event_subscriptions"]["request_url"]).path == EVENTS_PATH


def test_people_can_dm_the_bot():
    home = MANIFEST["features"]["app_home"]
    assert home["messages_tab_enabled"] is True
    assert home["messages_tab_read_only_enabled"] is False
    assert MANIFEST["features"]["bot_user"]["display_name"]


def test_interactivity_goes_to_the_served_route_for_the_feedback_buttons():
    interactivity = MANIFEST["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert urlparse(interactivity["request_url"]).path == EVENTS_PATH


def test_the_assistant_pane_is_enabled():
    view = MANIFEST["features"]["assistant_view"]
    assert view["assistant_description"]
    assert "assistant:write" in scopes()
