"""`threadwise serve | chat | doctor | prompt` (docs/spec.md §7).

This is the composition root: the only core module that names the adapters (and through them
the platform SDKs), and only inside the commands that use them: serve, chat and doctor.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from functools import partial
from typing import TextIO

from pydantic import SecretStr

from bot.app import Service, build_service
from bot.doctor import Check, PlatformCheck, known, run_doctor
from bot.messages import Adapter, IncomingMessage
from bot.settings import Settings, SettingsError, load_settings
from bot.workers import add_serve_arguments, become_worker, supervise

log = logging.getLogger("threadwise.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="threadwise", description="Slack and Teams chatbot on Azure OpenAI"
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the service for every configured platform")
    add_serve_arguments(serve)
    chat = sub.add_parser("chat", help="talk to the bot from the terminal")
    chat.add_argument("--thread", default="default", help="conversation name (default: default)")
    sub.add_parser("doctor", help="check settings and dependencies")
    prompt = sub.add_parser("prompt", help="show or change system prompts")
    prompt.add_argument("action", choices=["show", "set", "reset", "history"])
    prompt.add_argument("text", nargs="?", help="prompt text for `set` (or - for stdin)")
    prompt.add_argument(
        "--scope",
        default="global",
        help="global | <platform>:<workspace> | <platform>:<workspace>:<channel>",
    )
    return p


def _service_loop():
    """uvloop where it installs (not Windows): the same asyncio API for less CPU per answered
    message, which near a core's capacity is what keeps Slack's acks fast (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"threadwise: {exc}", file=sys.stderr)
        return 2
    from bot.logs import setup_logging

    if args.command in ("chat", "doctor", "prompt"):
        # Human-facing commands: library chatter would bury the conversation or the report.
        setup_logging("ERROR", "text", settings.secrets())
    else:
        setup_logging(settings.log_level, settings.log_format, settings.secrets())
    try:
        if args.command == "serve":
            if args.workers > 1 and args.worker_id is None:
                return asyncio.run(supervise(settings, args.workers))
            if args.worker_id is not None:
                become_worker(args.worker_id)
            with asyncio.Runner(loop_factory=_service_loop()) as runner:
                return runner.run(run_serve(settings, worker=args.worker_id))
        if args.command == "chat":
            return asyncio.run(run_chat(settings, args.thread, sys.stdin, sys.stdout))
        if args.command == "doctor":
            return asyncio.run(run_doctor(settings, sys.stdout, doctor_checks(settings)))
        return asyncio.run(run_prompt(settings, args.action, args.text, args.scope, sys.stdout))
    except SettingsError as exc:
        print(f"threadwise: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


# ------------------------------------------------------------------------------------ serve


def _secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def slack_settings_problem(settings: Settings) -> str | None:
    """What keeps the configured Slack adapter from starting (serve refuses, doctor reports)."""
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        return (
            "SLACK_SIGNING_SECRET: not set; HTTP mode needs it "
            "(or set SLACK_APP_TOKEN for Socket Mode)"
        )
    return None


def teams_settings_problem(settings: Settings) -> str | None:
    """What keeps the configured Teams adapter from starting (serve refuses, doctor reports)."""
    if settings.microsoft_app_id and settings.microsoft_app_type != "UserAssignedMSI":
        if settings.microsoft_app_password is None:
            return (
                "MICROSOFT_APP_PASSWORD: not set; Teams needs the app's client secret "
                "(or MICROSOFT_APP_TYPE=UserAssignedMSI)"
            )
    if settings.microsoft_app_type == "SingleTenant" and not settings.microsoft_app_tenant_id:
        return "MICROSOFT_APP_TENANT_ID: SingleTenant needs the tenant id"
    return None


def build_adapters(settings: Settings, service: Service) -> list[Adapter]:
    adapters: list[Adapter] = []
    if settings.slack_enabled:
        if problem := slack_settings_problem(settings):
            raise SettingsError(problem)
        from adapters.slack import SlackAdapter

        adapters.append(
            SlackAdapter(
                bot_token=settings.slack_bot_token.get_secret_value(),
                signing_secret=(
                    settings.slack_signing_secret.get_secret_value()
                    if settings.slack_signing_secret
                    else None
                ),
                app_token=(
                    settings.slack_app_token.get_secret_value()
                    if settings.slack_app_token
                    else None
                ),
                api_url=settings.slack_api_url,
                thread_followups=settings.slack_thread_followups,
                handler=service.responder,
                cache=service.store,
                metrics=service.metrics,
            )
        )
    if settings.teams_enabled:
        if problem := teams_settings_problem(settings):
            raise SettingsError(problem)
        from adapters.teams import TeamsAdapter

        adapters.append(
            TeamsAdapter(
                app_id=settings.microsoft_app_id,
                app_password=_secret(settings.microsoft_app_password),
                tenant_id=settings.microsoft_app_tenant_id,
                app_type=settings.microsoft_app_type,
                allow_anonymous=settings.teams_allow_anonymous,
                handler=service.responder,
                cache=service.store,
                metrics=service.metrics,
                allowed_callers=settings.teams_callers,
                allowed_channels=settings.teams_channels,
            )
        )
    return adapters


def check_anonymous_teams(settings: Settings) -> None:
    """Anonymous Teams (no app id) trusts whoever reaches the port: local test clients only."""
    if not (settings.teams_allow_anonymous and not settings.microsoft_app_id):
        return
    from adapters.teams.trust import is_loopback_host

    if settings.slack_enabled:
        raise SettingsError(
            "TEAMS_ALLOW_ANONYMOUS: refused together with Slack (SLACK_BOT_TOKEN is set); "
            "anonymous Teams is for a local test client, in a service of its own"
        )
    if not is_loopback_host(settings.host):
        raise SettingsError(
            f"TEAMS_ALLOW_ANONYMOUS: needs HOST on a loopback address (127.0.0.1, ::1 or "
            f"localhost), not {settings.host!r}: anyone who reaches the port is a Teams user"
        )


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


async def run_serve(settings: Settings, *, worker: int | None = None) -> int:
    """`worker`: this process is one of `serve --workers N` (bot/workers.py)."""
    from bot.server import serve

    if not (settings.slack_enabled or settings.teams_enabled):
        raise SettingsError(
            "SLACK_BOT_TOKEN / MICROSOFT_APP_ID: no platform configured; set Slack's or Teams' "
            "settings (or TEAMS_ALLOW_ANONYMOUS=true for a local test client)"
        )
    check_anonymous_teams(settings)
    settings.require_model()
    service = build_service(settings)
    try:
        adapters = build_adapters(settings, service)
    except BaseException:
        await service.close()
        raise
    if not worker:  # one banner for all workers
        print(banner(settings, adapters), flush=True)
    await serve(service, adapters, reuse_port=worker is not None)
    return 0


# ----------------------------------------------------------------------------------- doctor


def doctor_checks(settings: Settings) -> list[PlatformCheck]:
    """Each platform's doctor check, chosen the way `build_adapters` chooses adapters.

    An adapter (and its SDK, a second of imports for Teams) is loaded only when its platform
    is configured and its settings are complete; otherwise the settings alone give the line.
    """
    checks: list[PlatformCheck] = []
    if not settings.slack_enabled:
        checks.append(
            known(Check("slack", None, "SLACK_BOT_TOKEN not set: Slack disabled", required=False))
        )
    elif problem := slack_settings_problem(settings):
        checks.append(known(Check("slack", False, "settings", problem)))
    else:
        from adapters.slack.doctor import check_slack

        checks.append(
            partial(
                check_slack,
                bot_token=settings.slack_bot_token.get_secret_value(),
                api_url=settings.slack_api_url,
                socket_mode=settings.slack_app_token is not None,
            )
        )
    if not settings.teams_enabled:
        checks.append(
            known(Check("teams", None, "MICROSOFT_APP_ID not set: Teams disabled", required=False))
        )
    elif problem := teams_settings_problem(settings):
        checks.append(known(Check("teams", False, "settings", problem)))
    else:
        from adapters.teams.doctor import check_teams

        checks.append(
            partial(
                check_teams,
                app_id=settings.microsoft_app_id,
                app_password=_secret(settings.microsoft_app_password),
                tenant_id=settings.microsoft_app_tenant_id,
                app_type=settings.microsoft_app_type,
            )
        )
    return checks


# ------------------------------------------------------------------------------------- chat


async def run_chat(settings: Settings, thread: str, stdin: TextIO, stdout: TextIO) -> int:
    from adapters.console import Console

    settings.require_model()
    service = build_service(settings)
    console = Console(thread, stdout)
    interactive = stdin.isatty()
    where = "Redis" if settings.redis_url else "memory (this session only)"
    print(
        f"threadwise chat — thread {thread!r}, memory in {where}. "
        "Type !help for commands, Ctrl-D to quit.",
        file=stdout,
        flush=True,
    )
    try:
        while True:
            if interactive:
                stdout.write("you> ")
                stdout.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            text = line.rstrip("\n")
            if not text.strip():
                continue
            if interactive:
                stdout.write("bot> ")
                stdout.flush()
            await service.responder.handle(console.message(text), console.reply())
    finally:
        await service.close()
    return 0


# ----------------------------------------------------------------------------------- prompt


async def run_prompt(
    settings: Settings, action: str, text: str | None, scope: str, out: TextIO
) -> int:
    """The chat's `!prompt` handlers from a shell, recorded in the audit as `cli:<os user>`."""
    # A Teams channel id has colons of its own (19:…@thread.tacv2): split at most twice.
    parts = scope.split(":", 2)
    if scope != "global" and not (
        2 <= len(parts) <= 3 and all(parts) and parts[0] in ("slack", "teams")
    ):
        raise SettingsError(
            f"--scope: {scope!r} is not global, <platform>:<workspace> or "
            "<platform>:<workspace>:<channel> (platform slack or teams)"
        )
    if action == "set" and text in (None, "-"):
        text = await asyncio.to_thread(sys.stdin.read)
    elif action != "set" and text:
        print(f"threadwise: prompt {action} takes no text", file=sys.stderr)
        return 2
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
    finally:
        await service.close()
    print(result.text, file=out)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
