"""The CLI's parts that name no adapter: help texts, the parser class, the banner, notes.

`bot.cli` (the composition root, which alone imports adapters) builds the parser from these.
"""

from __future__ import annotations

import argparse
from importlib.metadata import PackageNotFoundError, version

from bot.messages import Adapter
from bot.settings import Settings

DESCRIPTION = """\
Threadwise: a Slack and Microsoft Teams chatbot on Azure OpenAI (or any OpenAI-compatible
model), with conversation memory in Redis.

Settings come from the environment and from a .env file in the working directory only
(docs/spec.md §6 lists them). Start with `threadwise doctor`, then `threadwise chat`."""

SERVE_HELP = """\
Run the HTTP service (health, readiness, metrics) and every platform that has settings:
Slack over HTTP (POST /slack/events) or Socket Mode (SLACK_APP_TOKEN), Teams at
POST /api/messages. Needs the model settings and SLACK_BOT_TOKEN or MICROSOFT_APP_ID.
SIGTERM or Ctrl-C stops taking events, finishes the replies in flight, then exits."""

CHAT_HELP = """\
Talk to the bot from the terminal: the same responder, prompts and commands (!help) as in
Slack and Teams, with you as an admin. Reads one message per line from stdin, streams each
reply to stdout; Ctrl-D quits. Needs only the model settings; with REDIS_URL a thread is
remembered across runs, without it for this session only.

Logs go to stderr only when LOG_LEVEL is set (DEBUG includes the openai and HTTP client
logs); when a turn fails, one line on stderr says why and points to `threadwise doctor`."""

DOCTOR_HELP = """\
Check each setting and dependency and print what works and what to fix: the settings, Redis
(PING and its eviction policy), the model (a one-token call), Slack (auth.test, and
apps.connections.open in Socket Mode) and Teams (a Bot Framework token). Exit status 1 when
a required check failed. Calls nothing that changes state."""


def package_version() -> str:
    try:
        return version("threadwise")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


class Parser(argparse.ArgumentParser):
    """A subcommand whose defaults say `intermixed=True` takes options among its words.

    argparse on its own fills an optional positional from the words *before* an option and
    then refuses the ones after it (`prompt set --scope X Hello`: "unrecognized arguments").
    """

    _inside = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if not self.get_default("intermixed") or self._inside:
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def banner(settings: Settings, adapters: list[Adapter]) -> str:
    store = (
        f"Redis (prefix {settings.redis_key_prefix!r})"
        if settings.redis_url
        else "in-process (no REDIS_URL: memory is lost on restart and not shared)"
    )
    lines = [
        f"threadwise serving on http://{settings.host}:{settings.port}",
        f"  model:   deployment {settings.azure_openai_deployment!r} at {settings.model_base_url}"
        f" ({'key' if settings.azure_openai_api_key else 'Entra ID'} auth)",
        f"  limits:  TOKEN_LIMIT {settings.token_limit}, MAX_RESPONSE_TOKENS "
        f"{settings.max_response_tokens}, history TTL {settings.history_ttl_seconds}s",
        f"  store:   {store}",
        "  routes:  GET /healthz, GET /readyz, GET /metrics",
    ]
    for a in adapters:
        lines.append(f"  {a.name + ':':<8} " + ", ".join(a.routes()))
    return "\n".join(lines)
