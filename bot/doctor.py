"""`threadwise doctor`: each setting and dependency checked, with what to fix.

The core checks what it owns (settings, the store, the model) and prints the report. Each
platform's check lives with its adapter (`adapters/<platform>/doctor.py`), which alone talks to
the platform's SDK; the composition root (`bot.cli`) hands those checks in, so this module never
imports an adapter or a platform SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from bot.preflight import env_file_note, redis_location
from bot.settings import Settings, SettingsError


@dataclass
class Check:
    """One line of the report: what was tried, whether it worked, and what to fix if not."""

    name: str
    ok: bool | None  # None: skipped (not configured, not required)
    tried: str
    fix: str = ""
    required: bool = True
    warn: bool = False  # works, but unsafe as configured: ⚠ and the fix, never a failure


def _check_settings(settings: Settings) -> Check:
    """Parsed (or doctor would not run) and complete: every required setting named at once."""
    try:
        settings.require_model()
    except SettingsError as exc:
        missing, _, fix = str(exc).partition("; ")
        return Check(
            "settings",
            False,
            missing.replace(": not set", " not set"),
            f"{fix} ({env_file_note()})",
        )
    return Check("settings", True, "all settings parsed, the required ones set")


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
    from bot.store import RedisStore, StoreUnavailable
    from bot.store.connect import describe, store_options

    where = redis_location(settings.redis_url.get_secret_value())
    store = RedisStore(
        settings.redis_url.get_secret_value(),
        prefix=settings.redis_key_prefix,
        history_budget=settings.history_budget,
        history_ttl=settings.history_ttl_seconds,
        socket_timeout=3,
        **store_options(settings),
    )
    try:
        await store.ping()
        checks = [Check("redis", True, f"PING {where}{await describe(store.r, settings)}")]
        checks.append(_eviction(await store.eviction_policy()))
        return checks
    except StoreUnavailable as exc:
        return [
            Check(
                "redis",
                False,
                f"PING {where}",
                f"Redis at {where} did not answer ({exc.__cause__.__class__.__name__}); "
                "check REDIS_URL, the password and TLS (rediss://)"
                + (
                    "; REDIS_AUTH=entra: the identity needs an access policy assignment on the "
                    "database (locally: az login)"
                    if settings.redis_auth == "entra"
                    else ""
                )
                + (
                    "; REDIS_CLUSTER=true needs a cluster-mode endpoint"
                    if settings.redis_cluster
                    else ""
                ),
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


async def _check_model(settings: Settings) -> list[Check]:
    from bot.doctor_model import check_model  # the model check (imports this module's Check)

    return await check_model(settings)


# A platform's check, ready to run: an adapter's check bound to its settings, or a known result.
PlatformCheck = Callable[[], Awaitable[Check]]


def known(check: Check) -> PlatformCheck:
    """A check whose result the settings alone decide (platform off, a setting missing)."""

    async def result() -> Check:
        return check

    return result


async def run_doctor(
    settings: Settings, out: TextIO, platforms: Sequence[PlatformCheck] = ()
) -> int:
    """Run every check at once and print the report; 1 when a required check failed."""
    store_checks, model_checks, *others = await asyncio.gather(
        _check_redis(settings), _check_model(settings), *(check() for check in platforms)
    )
    checks = [_check_settings(settings), *store_checks, *model_checks]
    checks += others
    if not (settings.slack_enabled or settings.teams_enabled):
        # Not a failure: `chat` needs no platform. Said, so `serve`'s refusal is no surprise.
        checks.append(
            Check(
                "platforms",
                None,
                "no Slack or Teams settings: `chat` works; `serve` needs SLACK_BOT_TOKEN or "
                "MICROSOFT_APP_ID",
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
