"""`threadwise doctor`: each setting and dependency checked, with what to fix."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TextIO

from bot.settings import Settings, SettingsError


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped (not configured, not required)
    tried: str
    fix: str = ""
    required: bool = True
    warn: bool = False  # works, but unsafe as configured: ⚠ and the fix, never a failure


async def _check_redis(settings: Settings) -> list[Check]:
    if settings.redis_url is None:
        return [
            Check(
                "store",
                True,
                "REDIS_URL not set: in-process store",
                "fine for `threadwise chat`; set REDIS_URL for serve with several replicas",
                required=False,
            )
        ]
    from urllib.parse import urlsplit

    from bot.store import RedisStore, StoreUnavailable

    parts = urlsplit(settings.redis_url.get_secret_value())
    where = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
    store = RedisStore(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_key_prefix,
        history_budget=settings.history_budget,
        history_ttl=settings.history_ttl_seconds,
        socket_timeout=3,
    )
    try:
        await store.ping()
        checks = [Check("redis", True, f"PING {where}")]
        checks.append(_eviction(await store.eviction_policy()))
        return checks
    except StoreUnavailable as exc:
        return [
            Check(
                "redis",
                False,
                f"PING {where}",
                f"Redis at {where} did not answer ({exc.__cause__.__class__.__name__}); "
                "check REDIS_URL, the password and TLS (rediss://)",
            )
        ]
    finally:
        await store.close()


def _eviction(policy: str | None) -> Check:
    """Exactly-once markers and locks carry TTLs: any eviction policy may drop them early."""
    if policy is None:
        return Check(
            "eviction",
            None,
            "maxmemory-policy could not be checked (INFO and CONFIG GET refused); "
            "make sure the database's eviction policy is NoEviction",
            required=False,
        )
    if policy == "noeviction":
        return Check("eviction", True, "maxmemory-policy noeviction", required=False)
    return Check(
        "eviction",
        False,
        f"maxmemory-policy {policy}",
        "under memory pressure Redis may evict exactly-once markers and conversation locks "
        "before their TTL (duplicate or overlapping answers): set maxmemory-policy "
        "noeviction (Azure Managed Redis: evictionPolicy NoEviction)",
        required=False,
        warn=True,
    )


async def _check_model(settings: Settings) -> Check:
    try:
        settings.require_model()
    except SettingsError as exc:
        name = str(exc).split(":")[0]
        return Check("model", False, "settings", f"set {name}")
    from bot.llm import ModelError, make_llm

    llm = make_llm(settings)
    tried = (
        f"one-token call to deployment {settings.azure_openai_deployment!r} at "
        f"{settings.model_base_url} ({'key' if settings.azure_openai_api_key else 'Entra ID'})"
    )
    try:
        async with asyncio.timeout(min(settings.llm_timeout_seconds, 30)):
            model = await llm.ping()
        return Check("model", True, tried + f" → {model}")
    except (ModelError, TimeoutError) as exc:
        kind = getattr(exc, "kind", "timeout")
        fixes = {
            "auth": "the key or identity was refused: check AZURE_OPENAI_API_KEY, or grant "
            "'Cognitive Services OpenAI User' to the identity",
            "not_found": "no such deployment: check AZURE_OPENAI_DEPLOYMENT and the endpoint",
            "timeout": "no answer (timed out or refused): check AZURE_OPENAI_ENDPOINT and the "
            "network",
            "unavailable": "could not reach the endpoint: check AZURE_OPENAI_ENDPOINT",
        }
        return Check("model", False, tried, fixes.get(kind, f"the call failed ({kind})"))
    except Exception as exc:  # e.g. no Entra credential available on this machine
        return Check(
            "model",
            False,
            tried,
            f"{type(exc).__name__}: set AZURE_OPENAI_API_KEY or "
            "sign in (az login) / use a managed identity",
        )
    finally:
        await llm.close()


async def _check_slack(settings: Settings) -> Check:
    if settings.slack_bot_token is None:
        return Check("slack", None, "SLACK_BOT_TOKEN not set: Slack disabled", required=False)
    if settings.slack_app_token is None and settings.slack_signing_secret is None:
        return Check("slack", False, "settings", "set SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN)")
    from slack_sdk.errors import SlackApiError
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    try:
        resp = await client.auth_test()
        mode = "Socket Mode" if settings.slack_app_token else "HTTP (POST /slack/events)"
        return Check(
            "slack", True, f"auth.test → team {resp.get('team')}, bot {resp.get('user')}; {mode}"
        )
    except SlackApiError as exc:
        return Check(
            "slack",
            False,
            "auth.test",
            f"Slack said {exc.response.get('error')}: check SLACK_BOT_TOKEN (xoxb-…)",
        )
    except Exception as exc:
        return Check(
            "slack",
            False,
            "auth.test",
            f"could not reach {settings.slack_api_url} ({type(exc).__name__})",
        )


async def _check_teams(settings: Settings) -> Check:
    if not settings.teams_enabled:
        return Check("teams", None, "MICROSOFT_APP_ID not set: Teams disabled", required=False)
    if not settings.microsoft_app_id:
        return Check(
            "teams",
            True,
            "TEAMS_ALLOW_ANONYMOUS=true: no auth, anyone who reaches the port is a Teams user",
            "for local test clients only: keep HOST on a loopback address (127.0.0.1) and "
            "unset TEAMS_ALLOW_ANONYMOUS anywhere else",
            required=False,
            warn=True,
        )
    if settings.microsoft_app_type != "UserAssignedMSI" and not settings.microsoft_app_password:
        return Check("teams", False, "settings", "set MICROSOFT_APP_PASSWORD")
    if settings.microsoft_app_type == "SingleTenant" and not settings.microsoft_app_tenant_id:
        return Check("teams", False, "settings", "set MICROSOFT_APP_TENANT_ID")
    from adapters.teams import CredentialsError, verify_credentials

    tried = (
        f"Bot Framework token for app {settings.microsoft_app_id} ({settings.microsoft_app_type})"
    )
    try:
        async with asyncio.timeout(30):
            await verify_credentials(
                app_id=settings.microsoft_app_id,
                app_password=(
                    settings.microsoft_app_password.get_secret_value()
                    if settings.microsoft_app_password
                    else None
                ),
                tenant_id=settings.microsoft_app_tenant_id,
                app_type=settings.microsoft_app_type,
            )
    except CredentialsError as exc:
        return Check(
            "teams",
            False,
            tried,
            f"{exc}: check MICROSOFT_APP_ID / "
            "MICROSOFT_APP_PASSWORD / MICROSOFT_APP_TENANT_ID / MICROSOFT_APP_TYPE",
        )
    except TimeoutError:
        return Check("teams", False, tried, "no answer from Microsoft Entra ID in 30 s")
    return Check("teams", True, tried)


async def run_doctor(settings: Settings, out: TextIO) -> int:
    store_checks, *others = await asyncio.gather(
        _check_redis(settings),
        _check_model(settings),
        _check_slack(settings),
        _check_teams(settings),
    )
    checks = [Check("settings", True, "all settings parsed"), *store_checks, *others]
    if not (settings.slack_enabled or settings.teams_enabled):
        checks.append(
            Check(
                "platforms",
                False,
                "Slack or Teams settings",
                "`serve` needs SLACK_BOT_TOKEN or MICROSOFT_APP_ID (chat works without)",
                required=False,
            )
        )
    failed = False
    warnings = 0
    for c in checks:
        mark = "⚠" if c.warn else "–" if c.ok is None else ("✓" if c.ok else "✗")
        print(f"{mark} {c.name:<9} {c.tried}", file=out)
        if (c.ok is False or c.warn) and c.fix:
            print(f"  → {c.fix}", file=out)
        failed |= c.ok is False and c.required
        warnings += c.warn
    if failed:
        print("\nSome required checks failed.", file=out)
    else:
        note = f" ({warnings} warning{'s' * (warnings != 1)}: see ⚠)" if warnings else ""
        print(f"\nAll required checks passed{note}.", file=out)
    return 1 if failed else 0
