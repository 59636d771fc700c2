"""Slack's part of `threadwise doctor`: the bot token, tried with the client `serve` uses."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from adapters.slack.api import error_code, make_client
from bot.doctor import Check


async def check_slack(*, bot_token: str, api_url: str, socket_mode: bool) -> Check:
    """`auth.test` through `make_client`, so doctor calls exactly the URL serve will call."""
    client = make_client(bot_token, api_url)
    try:
        resp = await client.auth_test()
    except SlackApiError as exc:
        return Check(
            "slack",
            False,
            "auth.test",
            f"Slack said {error_code(exc)}: check SLACK_BOT_TOKEN (xoxb-…) and SLACK_API_URL",
        )
    except Exception as exc:
        return Check(
            "slack", False, "auth.test", f"could not reach {api_url} ({type(exc).__name__})"
        )
    mode = "Socket Mode" if socket_mode else "HTTP (POST /slack/events)"
    return Check(
        "slack", True, f"auth.test → team {resp.get('team')}, bot {resp.get('user')}; {mode}"
    )
