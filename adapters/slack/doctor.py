"""Slack's part of `threadwise doctor`: the tokens, tried with the client `serve` uses.

The bot token by `auth.test`; in Socket Mode the app token too, by `apps.connections.open`
(the call serve's first connection makes: the WebSocket URL it hands out is left unused and
expires).
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from adapters.slack.api import error_code, make_client
from bot.doctor import Check


async def check_slack(*, bot_token: str, api_url: str, app_token: str | None = None) -> Check:
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
    tried = f"auth.test → team {resp.get('team')}, bot {resp.get('user')}"
    if app_token is None:
        return Check("slack", True, f"{tried}; HTTP (POST /slack/events)")
    tried += "; Socket Mode: apps.connections.open"
    try:
        await make_client(app_token, api_url).apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        return Check(
            "slack",
            False,
            tried,
            f"Slack said {error_code(exc)}: check SLACK_APP_TOKEN (xapp-…, an app-level "
            "token with the connections:write scope) and that Socket Mode is on for the app",
        )
    except Exception as exc:
        return Check("slack", False, tried, f"could not reach {api_url} ({type(exc).__name__})")
    return Check("slack", True, tried + " → ok")
