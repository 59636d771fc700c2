"""`threadwise prompt show|set|reset|history [--scope …] [TEXT…]`: the admin commands from a shell.

The words after the action are the prompt, as in chat (`prompt set Be very brief`), with
`--scope` anywhere among them; `-` (or no text) reads the prompt from stdin. Changes need
REDIS_URL: the in-process store would die with the command, so `set` and `reset` without it
are refused rather than reported done.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import TextIO

from bot.app import build_service
from bot.messages import IncomingMessage
from bot.preflight import redis_location
from bot.settings import Settings, SettingsError
from bot.store import StoreUnavailable

DESCRIPTION = """\
Show or change the system prompt of a scope, as the chat's `!prompt` admin commands do, and
recorded in the prompt audit as cli:<os user>.

  show      the prompt in effect at the scope, and where it comes from
  set       set the scope's prompt: the words given (unquoted is fine), or stdin with `-`
            or with no text (`threadwise prompt set --scope slack:T024BE7LD - < prompt.md`)
  reset     remove the scope's prompt; the next wider scope's applies again
  history   the scope's audit: who changed what, newest first

`set` and `reset` need REDIS_URL (the store serve uses); `show` and `history` without it show
the defaults."""

EPILOG = """\
examples:
  threadwise prompt show --scope slack:T024BE7LD:C0123
  threadwise prompt set Be very brief.
  threadwise prompt set --scope teams:<tenant id> - < support-prompt.md
  threadwise prompt reset --scope slack:T024BE7LD"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prompt",
        help="show or change system prompts",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["show", "set", "reset", "history"])
    p.add_argument("text", nargs="*", help="the prompt for `set` (- or none: read stdin)")
    p.add_argument(
        "--scope",
        default="global",
        help="global (default) | <platform>:<workspace> | <platform>:<workspace>:<channel>, "
        "platform slack or teams",
    )
    p.set_defaults(run=_run, intermixed=True)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.action != "set" and args.text:
        args.cli_parser.error(f"prompt {args.action} takes no text (got {' '.join(args.text)!r})")
    text = " ".join(args.text) if args.text and args.text != ["-"] else None
    return asyncio.run(run_prompt(settings, args.action, text, args.scope, sys.stdout))


def _check_scope(scope: str) -> list[str]:
    # A Teams channel id has colons of its own (19:…@thread.tacv2): split at most twice.
    parts = scope.split(":", 2)
    if scope != "global" and not (
        2 <= len(parts) <= 3 and all(parts) and parts[0] in ("slack", "teams")
    ):
        raise SettingsError(
            f"--scope: {scope!r} is not global, <platform>:<workspace> or "
            "<platform>:<workspace>:<channel> (platform slack or teams)"
        )
    return parts


async def run_prompt(
    settings: Settings, action: str, text: str | None, scope: str, out: TextIO
) -> int:
    """The chat's `!prompt` handlers from a shell, recorded in the audit as `cli:<os user>`."""
    parts = _check_scope(scope)
    if action in ("set", "reset") and settings.redis_url is None:
        raise SettingsError(
            f"REDIS_URL: not set; `prompt {action}` changes the prompts serve reads from Redis "
            "(without it the change would vanish when this command exits)"
        )
    if action == "set" and text is None:
        if sys.stdin.isatty():
            print("threadwise: type the prompt, then Ctrl-D on a line of its own", file=sys.stderr)
        text = await asyncio.to_thread(sys.stdin.read)
    flag = "--global" if scope == "global" else ("--workspace" if len(parts) == 2 else "")
    command = f"!prompt {action}" + (f" {flag}" if flag else "")
    if action == "set":
        command += "\n" + (text or "")
    user = getpass.getuser()
    message = IncomingMessage(
        platform=parts[0] if scope != "global" else "console",  # type: ignore[arg-type]
        workspace=parts[1] if len(parts) > 1 else "-",
        channel=parts[2] if len(parts) > 2 else "-",
        thread=None,
        user_id=user,
        user_name=f"cli:{user}",
        text=command,
        message_id="cli",
        is_dm=True,
    )
    service = build_service(settings, with_model=False)
    try:
        result = await service.commands.run(message, principal=f"cli:{user}", admin=True)
    except StoreUnavailable as exc:
        where = redis_location(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
        cause = exc.__cause__ or exc
        print(
            f"threadwise: Redis at {where} did not answer ({type(cause).__name__}); "
            "check REDIS_URL, the password and TLS (rediss://), or run `threadwise doctor`",
            file=sys.stderr,
        )
        return 1
    finally:
        await service.close()
    print(result.text, file=out)
    return 0 if result.ok else 1
