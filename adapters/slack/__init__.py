"""Slack adapter: slack-bolt (async) in HTTP or Socket Mode, streamed replies, slash command."""

from adapters.slack.adapter import SlackAdapter
from adapters.slack.reply import (
    SlackDeliveryError,
    SlackReplies,
    SlackReplyTarget,
    SlashReplyTarget,
)

__all__ = [
    "SlackAdapter",
    "SlackDeliveryError",
    "SlackReplies",
    "SlackReplyTarget",
    "SlashReplyTarget",
]
