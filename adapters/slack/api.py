"""Small helpers around slack_sdk: the client Threadwise uses, error codes, failure logging."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("threadwise.slack")

DEFAULT_API_URL = "https://slack.com/api/"


def make_client(
    token: str | None, api_url: str = DEFAULT_API_URL, *, timeout: int = 30
) -> AsyncWebClient:
    """An AsyncWebClient on `api_url` that retries what Slack asks to be retried."""
    client = AsyncWebClient(token=token, logger=logging.getLogger("threadwise.slack.sdk"))
    return configure_client(client, api_url, timeout=timeout)


def configure_client(
    client: AsyncWebClient, api_url: str = DEFAULT_API_URL, *, timeout: int = 30
) -> AsyncWebClient:
    """Point `client` at `api_url` and make it retry what Slack asks to be retried.

    429 is retried after `Retry-After` (up to 3 times), 500/503 with backoff (twice), dropped
    connections once. slack_sdk retries nothing but connection errors unless told to. These are
    the client's public attributes, read on every call.
    """
    client.base_url = api_url if api_url.endswith("/") else api_url + "/"
    client.timeout = timeout
    client.retry_handlers = [
        AsyncConnectionErrorRetryHandler(max_retry_count=1),
        AsyncRateLimitErrorRetryHandler(max_retry_count=3),
        AsyncServerErrorRetryHandler(max_retry_count=2),
    ]
    return client


def error_code(e: BaseException) -> str:
    """Slack's `error` code for an API failure (`ratelimited`, `not_allowed`, …), else a type."""
    if isinstance(e, SlackApiError):
        status = getattr(e.response, "status_code", None)
        try:
            code = e.response.get("error")
            if code:
                return str(code)
        except Exception:  # not a JSON object (a proxy's or Slack's 5xx page)
            pass
        return f"http_{status}" if status else "slack_api_error"
    code = getattr(e, "slack_error", None)
    if isinstance(code, str) and code:
        return code
    return type(e).__name__


def log_failure(method: str, e: BaseException, *, level: int = logging.WARNING) -> str:
    """Log a failed Web API call with its method and error code (never the message text)."""
    code = error_code(e)
    log.log(level, "slack %s failed: %s", method, code, extra={"method": method, "error": code})
    return code
