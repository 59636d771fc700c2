"""`threadwise serve | chat | doctor | prompt | data` (docs/spec.md §7).

This is the composition root: the only core module that names the adapters (and through them
the platform SDKs), and only inside the commands that use them: serve, chat and doctor.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from functools import partial
from typing import TextIO

from pydantic import SecretStr

from bot import cli_prompt, data_cli, feedback_cli
from bot.app import Service, build_service
from bot.cli_base import (
    CHAT_HELP,
    DESCRIPTION,
    DOCTOR_HELP,
    SERVE_HELP,
    Parser,
    banner,
    package_version,
)
from bot.doctor import Check, PlatformCheck, known, run_doctor
from bot.messages import Adapter
from bot.preflight import (
    LastFailure,
    env_file_note,
    error_counts,
    redis_start_warning,
    turn_failure_hint,
)
from bot.server import StartFailed
from bot.settings import Settings, SettingsError, load_settings
from bot.workers import add_serve_arguments, become_worker, supervise

log = logging.getLogger("threadwise.cli")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="threadwise",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"threadwise {package_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    raw = argparse.RawDescriptionHelpFormatter
    serve = sub.add_parser(
        "serve",
        help="run the service for every configured platform",
        description=SERVE_HELP,
        formatter_class=raw,
    )
    add_serve_arguments(serve)
    serve.set_defaults(run=_serve, service_logs=True)
    chat = sub.add_parser(
        "chat",
        help="talk to the bot from the terminal",
        description=CHAT_HELP,
        formatter_class=raw,
    )
    chat.add_argument(
        "--thread",
        default="default",
        help="conversation name, remembered with REDIS_URL (default: default)",
    )
    chat.set_defaults(run=_chat)
    doctor = sub.add_parser(
        "doctor",
        help="check settings and dependencies",
        description=DOCTOR_HELP,
        formatter_class=raw,
    )
    doctor.set_defaults(run=_doctor)
    # Subcommands of other modules: each module's `register(sub)` adds its parser(s) with
    # `set_defaults(run=fn)`, where fn(args, settings) -> exit code runs after settings and
    # logging are set up (`intermixed=True` too for options among free words). One line each:
    cli_prompt.register(sub)
    feedback_cli.register(sub)
    data_cli.register(sub)
    for parser in sub.choices.values():
        # Usage errors found after parsing show the subcommand's usage: `args.cli_parser.error`.
        parser.set_defaults(cli_parser=parser)
    return p


def _service_loop():
    """uvloop where it installs (not Windows): the same asyncio API for less CPU per answered
    message, which near a core's capacity is what keeps Slack's acks fast (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _fail(exc: SettingsError) -> int:
    text = str(exc)
    if ": not set" in text or "no platform configured" in text:
        text += f" ({env_file_note()})"
    print(f"threadwise: {text}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Exit status as the return value: argparse's exits (usage errors 2, --help 0) too."""
    try:
        return _main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1


def _main(argv: list[str] | None) -> int:
    args, extra = _parser().parse_known_args(argv)
    if extra:
        args.cli_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        settings = load_settings()
    except SettingsError as exc:
        return _fail(exc)
    from bot.logs import setup_logging

    if getattr(args, "service_logs", False):
        setup_logging(settings.log_level, settings.log_format, settings.secrets())
    else:
        # Human-facing commands: silent unless LOG_LEVEL is set, then one line per record
        # (a traceback only at DEBUG), so library chatter never buries the conversation.
        explicit = "log_level" in settings.model_fields_set
        setup_logging(
            settings.log_level if explicit else "ERROR",
            "line",
            settings.secrets(),
            quiet=not explicit,
        )
    try:
        return args.run(args, settings)
    except SettingsError as exc:
        return _fail(exc)
    except StartFailed as exc:
        print(f"threadwise: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    if args.workers > 1 and args.worker_id is None:
        return asyncio.run(supervise(settings, args.workers))
    if args.worker_id is not None:
        become_worker(args.worker_id)
    with asyncio.Runner(loop_factory=_service_loop()) as runner:
        return runner.run(run_serve(settings, worker=args.worker_id))


def _chat(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_chat(settings, args.thread, sys.stdin, sys.stdout))


def _doctor(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(run_doctor(settings, sys.stdout, doctor_checks(settings)))


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
                feedback=service.feedback,
                suggestions=service.suggestions,
                history_ttl=settings.history_ttl_seconds,
                commands=service.commands,
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
                feedback=service.feedback,
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
    if warning := await redis_start_warning(settings, service.store):
        log.warning(warning)
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
                app_token=_secret(settings.slack_app_token),
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


async def run_chat(
    settings: Settings, thread: str, stdin: TextIO, stdout: TextIO, stderr: TextIO | None = None
) -> int:
    from adapters.console import Console

    stderr = stderr or sys.stderr
    settings.require_model()
    service = build_service(settings)
    console = Console(thread, stdout)
    interactive = stdin.isatty()
    kept = "kept in Redis" if settings.redis_url else "kept for this session only (no REDIS_URL)"
    print(
        f"threadwise chat — thread {thread!r}, conversation {kept}. "
        "Type !help for commands, Ctrl-D to quit.",
        file=stdout,
        flush=True,
    )
    failures = LastFailure()
    logging.getLogger().addHandler(failures)
    try:
        if warning := await redis_start_warning(settings, service.store):
            print(f"threadwise: {warning}", file=stderr, flush=True)
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
            before, failures.exc = error_counts(service.metrics), None
            await service.responder.handle(console.message(text), console.reply())
            after = error_counts(service.metrics)
            if hint := turn_failure_hint(before, after, settings, failures.exc):
                print(f"threadwise: {hint}", file=stderr, flush=True)
    finally:
        logging.getLogger().removeHandler(failures)
        await service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
