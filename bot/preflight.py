"""What the CLI tells a person at start and when a turn fails: one line each, naming the fix.

`serve` and `chat` ping Redis once at start (`redis_start_warning`), so a dead REDIS_URL is
said at once rather than only per message or in `/readyz`. `chat` prints `turn_failure_hint`
after a turn that did not get an answer from the model: the apology in the conversation says
what the user sees, the hint on stderr says what happened and where to look
(`threadwise doctor`). No secret is ever part of a line: Redis is named by scheme, host and
port, never by its URL.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urlsplit

from bot.metrics import Metrics
from bot.settings import Settings
from bot.store import Store, StoreUnavailable

DOCTOR = "run `threadwise doctor` to check the settings"
START_PING_SECONDS = 3.0


def env_file_note() -> str:
    """Where settings were looked for, for a missing one (`.env` only from the working dir)."""
    path = Path.cwd() / ".env"
    found = "" if path.is_file() else ", which does not exist"
    return f"settings are read from the environment and from {path}{found}"


def redis_location(url: str) -> str:
    """`scheme://host:port` of a Redis URL: where it is, without the password or database."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
    except ValueError:
        return "the REDIS_URL address"


async def redis_start_warning(settings: Settings, store: Store) -> str | None:
    """One line when REDIS_URL is set and Redis does not answer a PING; None when it does."""
    if settings.redis_url is None:
        return None
    where = redis_location(settings.redis_url.get_secret_value())
    try:
        async with asyncio.timeout(START_PING_SECONDS):
            await store.ping()
        return None
    except (StoreUnavailable, TimeoutError, OSError) as exc:
        cause = exc.__cause__ or exc
        return (
            f"REDIS_URL: Redis at {where} did not answer ({type(cause).__name__}); "
            "every message will be refused until it does — check REDIS_URL, the password "
            "and TLS (rediss://), or `threadwise doctor`"
        )


def error_counts(metrics: Metrics) -> dict[str, float]:
    """The errors counter by kind, to tell what a turn ran into (model_<kind>, store, …)."""
    counts: dict[str, float] = {}
    for family in metrics.errors.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                counts[sample.labels["kind"]] = sample.value
    return counts


def _model_hint(kind: str, settings: Settings) -> str | None:
    where = settings.model_base_url
    deployment = settings.azure_openai_deployment
    auth = "AZURE_OPENAI_API_KEY" if settings.azure_openai_api_key else "the Entra ID identity"
    if "cred" in kind or "entra" in kind:
        return (
            "no Microsoft Entra ID credential for the model on this machine: set "
            "AZURE_OPENAI_API_KEY, or sign in (az login) / use a managed identity"
        )
    what = {
        "auth": f"{where} refused {auth} (HTTP 401/403)",
        "not_found": f"{where} has no deployment {deployment!r}",
        "timeout": f"{where} did not answer within LLM_TIMEOUT_SECONDS "
        f"({settings.llm_timeout_seconds:g} s)",
        "unavailable": f"could not get an answer from {where}",
        "unreachable": f"could not reach {where}",
        "rate_limited": f"{where} is rate-limiting deployment {deployment!r} (HTTP 429)",
        "server_error": f"{where} failed (HTTP 5xx)",
        "bad_request": f"{where} refused the request (HTTP 400)",
        "interrupted": f"the reply from {where} broke off",
    }
    if kind in ("content_filter", "context_length"):
        return None  # the reply in the conversation says it all; no setting to fix
    return what.get(kind, f"the call to {where} failed ({kind})")


def turn_failure_hint(
    before: dict[str, float],
    after: dict[str, float],
    settings: Settings,
    internal: BaseException | None = None,
) -> str | None:
    """One line for stderr about what a turn ran into, from the errors it counted."""
    new = [kind for kind, n in after.items() if n > before.get(kind, 0)]
    for kind in new:
        if kind.startswith("model_") and (hint := _model_hint(kind[6:], settings)):
            return f"model call failed: {hint}; {DOCTOR}"
    if "store" in new and settings.redis_url is not None:
        where = redis_location(settings.redis_url.get_secret_value())
        return f"Redis at {where} did not answer (REDIS_URL); {DOCTOR}"
    if "internal" in new:
        if internal is not None and type(internal).__name__ in (
            "ClientAuthenticationError",
            "CredentialUnavailableError",
        ):
            return f"model call failed: {_model_hint('credentials', settings)}; {DOCTOR}"
        what = f" ({type(internal).__name__})" if internal is not None else ""
        return f"the turn failed inside threadwise{what}; LOG_LEVEL=DEBUG shows the traceback"
    return None


class LastFailure(logging.Handler):
    """Keeps the exception of the latest failed turn (the responder logs it with exc_info)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.exc: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.exc = record.exc_info[1]
