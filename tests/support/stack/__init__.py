"""What the reliability and security tests share: the stack they run, senders, readers, checks.

A `Stack` is the service under test as people meet it: `threadwise serve` in a subprocess (real
Redis, both platforms: Slack over HTTP and Teams with an app id, its tokens checked against the
key set the fake connector serves, see ../local_auth/sitecustomize.py) with the local fakes as its
world — `FakeOpenAI` as Azure OpenAI, `FakeSlack` as Slack's Web API, `FakeConnector` as the Bot
Framework connector. Tests drive it with signed Slack events and Teams activities and read what a
person would see (the bot's messages at the fakes) and what the bot kept (its Redis keys).

The parts: `world` (the workspace, people, ids, keys and Slack events), `seen` (reading what
people see and what the service reports), `service` (the `Stack` that runs it all).
"""

from tests.support.stack.seen import (
    INTERNALS,
    assert_no_internals,
    log_records,
    metric,
    rss_bytes,
    slack_finished,
    slack_thread,
    teams_shown,
    teams_thread,
    teams_visible,
)
from tests.support.stack.service import HERE, Stack, model_env
from tests.support.stack.world import (
    FIGURES,
    SECRET,
    SLACK_ADMIN,
    TEAM,
    TEAMS_ADMIN,
    TEAMS_MEMBER,
    USERS,
    channel,
    dm,
    figure,
    mention,
    message,
    slack_key,
    teams_key,
    ts,
)

__all__ = [
    "FIGURES",
    "HERE",
    "INTERNALS",
    "SECRET",
    "SLACK_ADMIN",
    "TEAM",
    "TEAMS_ADMIN",
    "TEAMS_MEMBER",
    "USERS",
    "Stack",
    "assert_no_internals",
    "channel",
    "dm",
    "figure",
    "log_records",
    "mention",
    "message",
    "metric",
    "model_env",
    "rss_bytes",
    "slack_finished",
    "slack_key",
    "slack_thread",
    "teams_key",
    "teams_shown",
    "teams_thread",
    "teams_visible",
    "ts",
]
