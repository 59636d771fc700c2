"""What went wrong with a model call, named: the kinds of docs/spec.md §4.

Every failure of a model call becomes one `ModelError` whose `kind` is the word the logs, the
metrics label (`threadwise_errors{kind="model_<kind>"}`) and the user's message are chosen by:

| kind | meaning | retried |
|---|---|---|
| `unreachable` | no connection (refused, DNS, TLS, connect timeout): nothing was sent | yes |
| `timeout` | the request arrived, no first byte within `LLM_TIMEOUT_SECONDS` | no |
| `rate_limited` | 429 | yes, paced (`bot.pacing`) |
| `server_error` | 5xx, or the connection closed before any answer | yes |
| `auth` | 401/403 | no |
| `credentials_unavailable` | Entra ID chosen (no key) but no identity to get a token from | no |
| `not_found` | 404: no such deployment | no |
| `content_filter` | Azure's content filter refused the prompt | no |
| `context_length` | the prompt does not fit the model's context | trimmed once |
| `empty_stream` | a stream without `finish_reason` or `[DONE]`, unexplained when re-asked | yes |
| `bad_request` | any other 4xx | no |
| `interrupted` | the stream broke after text was shown (the user has that text) | no |

Failures arrive from `bot.model_http` as an HTTP status with its body, an aiohttp exception
(read by its cause chain, to tell "cannot reach" from "took too long"), or an `error` event in a
200 stream (llama.cpp's server sends these).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import aiohttp

RETRIED = frozenset({"unreachable", "rate_limited", "server_error", "empty_stream"})

_CONTEXT = re.compile(
    r"maximum context length|context length|context size|context window|exceed_context"
    r"|too many tokens|prompt is too long",
    re.IGNORECASE,
)


class ModelError(Exception):
    """The model call failed for good; `kind` says why (for metrics and the user's message).

    `retry_after` is the server's Retry-After (seconds) when it sent one.
    """

    def __init__(self, kind: str, detail: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.retry_after = retry_after


def _error_object(body: Any) -> dict:
    """The `error` object of an error body (`{"error": {...}}`, or the bare object)."""
    err = body.get("error", body) if isinstance(body, dict) else {}
    return err if isinstance(err, dict) else {}


def _error_code(err: Mapping[str, Any]) -> str | None:
    code = err.get("code") or err.get("type")
    inner = err.get("innererror", {})
    if isinstance(inner, dict) and inner.get("code") == "ResponsibleAIPolicyViolation":
        return "content_filter"
    return str(code) if code else None


def retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `Retry-After` (a number of seconds), if present."""
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / scale
        except ValueError:
            continue  # an HTTP date: rare from model servers; the backoff applies instead
        if 0 <= value <= 3600:
            return value
    return None


def _causes(exc: BaseException):
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        yield cur
        cur = cur.__cause__ or cur.__context__
        seen += 1


def _connection_kind(exc: BaseException) -> tuple[str, str]:
    """unreachable / timeout / server_error for a transport failure, from its cause chain."""
    for cause in _causes(exc):
        if isinstance(cause, aiohttp.ClientConnectorError | ConnectionRefusedError):
            return "unreachable", f"cannot connect ({type(cause).__name__})"
        if isinstance(cause, aiohttp.ConnectionTimeoutError):  # before its parent class below
            return "unreachable", "connect timed out"
        if isinstance(cause, aiohttp.ServerTimeoutError):
            return "timeout", "no answer in time"
        if isinstance(cause, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
            return "server_error", "connection closed before an answer"
    if isinstance(exc, TimeoutError):
        return "timeout", "no answer in time"
    return "server_error", "connection failed"


def credentials_unavailable(exc: BaseException) -> bool:
    """azure-identity found no identity (or could not get a token): named by class, so the core
    need not import azure-identity unless Entra ID is in use."""
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("azure.") and cls.__name__ in (
            "CredentialUnavailableError",
            "ClientAuthenticationError",
        ):
            return True
    return False


CREDENTIALS_FIX = (
    "no Microsoft Entra ID credential is available: set AZURE_OPENAI_API_KEY, or sign in "
    "(az login) / use a managed identity (AZURE_CLIENT_ID for a user-assigned one)"
)


def classify_status(status: int, headers: Mapping[str, str] | None, body: Any) -> ModelError:
    """An HTTP error response: its status, headers (Retry-After) and decoded JSON body."""
    err = _error_object(body)
    code = _error_code(err)
    message = str(err.get("message") or "")
    if status == 429:
        return ModelError("rate_limited", "HTTP 429", retry_after=retry_after(headers))
    if status >= 500:  # a 503 may say when to come back
        return ModelError("server_error", f"HTTP {status}", retry_after=retry_after(headers))
    if code == "content_filter":
        return ModelError("content_filter", "prompt filtered")
    if code == "context_length_exceeded" or _CONTEXT.search(message):
        return ModelError("context_length", message[:200])
    if status in (401, 403):
        return ModelError("auth", f"HTTP {status}")
    if status == 404:
        return ModelError("not_found", "deployment not found")
    return ModelError("bad_request", f"HTTP {status} {code or ''}".strip())


def classify_error_event(err: Any) -> ModelError:
    """An `error` event inside a 200 stream."""
    err = _error_object(err)
    message = str(err.get("message") or "")
    if _error_code(err) == "context_length_exceeded" or _CONTEXT.search(message):
        return ModelError("context_length", message[:200])
    return ModelError("server_error", f"error event: {message[:120]}")


def transport_error(exc: BaseException) -> ModelError:
    """A connection that failed, timed out or closed: no HTTP status to go by."""
    kind, detail = _connection_kind(exc)
    return ModelError(kind, detail)


def classify(exc: BaseException) -> ModelError:
    """Any exception of a model call (transport, azure-identity, ours) as a `ModelError`."""
    if isinstance(exc, ModelError):
        return exc
    if credentials_unavailable(exc):
        return ModelError("credentials_unavailable", CREDENTIALS_FIX)
    if isinstance(exc, aiohttp.ClientError | ConnectionRefusedError):
        return transport_error(exc)
    if isinstance(exc, TimeoutError):
        return ModelError("timeout", "no answer in time")
    return ModelError("server_error", type(exc).__name__)
