"""Structured logs: JSON (or text) lines that carry the turn's conversation and request id.

Secrets never reach a handler: `SecretFilter` masks every configured secret value in every
record, whatever the level, as a last line of defence behind "never log them" — and, by
pattern, the tokens that exist only at run time (Bot Framework and Entra bearer tokens in an
`Authorization` header, Slack `xox…-`/`xapp-` tokens of other installations).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator

_conversation: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "conversation", default=None
)
_request: contextvars.ContextVar[str | None] = contextvars.ContextVar("request", default=None)

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextlib.contextmanager
def turn_context(conversation: str, request_id: str) -> Iterator[None]:
    t1 = _conversation.set(conversation)
    t2 = _request.set(request_id)
    try:
        yield
    finally:
        _conversation.reset(t1)
        _request.reset(t2)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "conversation", None) is None:
            record.conversation = _conversation.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = _request.get()
        return True


# Linear: every branch starts with a literal word and its quantifiers are possessive, so a
# long run of spaces or token characters is read once, never re-tried from each position.
_TOKEN = r"[A-Za-z0-9\-._~+/]++=*+"  # RFC 6750 b64token
_RUNTIME_TOKENS = re.compile(
    r"(?i)\b(?P<header>authorization[\"']?+\s*+[:=]\s*+[\"']?+)"
    r"(?:(?P<scheme>bearer|basic|pop)\s++)?+"
    + _TOKEN
    # A bare "bearer" needs a token-sized word after it, so prose ("the bearer of") stays.
    + r"|\b(?P<bearer>bearer\s++)(?=[A-Za-z0-9\-._~+/]{8})"
    + _TOKEN
    + r"|\b(?P<slack>(?:xoxe\.)?+xox[abeposr]-|xapp-)[A-Za-z0-9\-]++"
)


def _mask_token(m: re.Match[str]) -> str:
    if m["header"] is not None:
        return m["header"] + (f"{m['scheme']} ***" if m["scheme"] else "***")
    if m["bearer"] is not None:
        return m["bearer"] + "***"
    return m["slack"] + "***"


class SecretFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def _mask(self, text: str) -> str:
        for s in self.secrets:
            if s in text:
                text = text.replace(s, "***")
        return _RUNTIME_TOKENS.sub(_mask_token, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._mask(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._mask(record.exc_text)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, self._mask(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None:
                out[key] = value
        # exc_text first: it is the traceback as SecretFilter masked it; formatting exc_info
        # again would bring the unmasked text back.
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD and v is not None}
        if extras:
            base += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        return base


class OneLineFormatter(TextFormatter):
    """For a person at a terminal: one line per record; the traceback only at DEBUG.

    Without DEBUG an exception is named by its last line's type and first line of message (a
    DefaultAzureCredential failure is 20 lines of attempted credentials otherwise), taken from
    the traceback text `SecretFilter` has already masked.
    """

    def format(self, record: logging.LogRecord) -> str:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            return super().format(record)
        exc_text, exc_info = record.exc_text, record.exc_info
        record.exc_text, record.exc_info = None, None
        try:
            text = super().format(record)
        finally:
            record.exc_text, record.exc_info = exc_text, exc_info
        if exc_text:
            text += f" ({_last_exception_line(exc_text)})"
        return " ".join(text.splitlines())


def _last_exception_line(traceback_text: str) -> str:
    lines = traceback_text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (")]
    for line in lines[(starts[-1] + 1 if starts else 0) :]:
        if line and not line[0].isspace():
            return line.rsplit(".", 1)[-1] if ":" not in line else _short(line)
    return lines[-1].strip() if lines else ""


def _short(line: str) -> str:
    name, _, message = line.partition(":")
    return f"{name.rsplit('.', 1)[-1]}:{message}"


def setup_logging(
    level: str, fmt: str, secrets: Iterable[str] = (), stream=None, *, quiet: bool = False
) -> logging.Handler:
    """One handler on the root logger, masking secrets; `quiet` keeps it silent (chat's default).

    Quiet, records are still made at `level` (other handlers, such as chat's failure hint,
    see them) but this handler prints none.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else OneLineFormatter()
        if fmt == "line"
        else TextFormatter()
    )
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretFilter(secrets))
    if quiet:
        handler.setLevel(logging.CRITICAL + 1)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Libraries log request bodies and headers at DEBUG: they stay at WARNING unless DEBUG is
    # asked for, and then follow it (Slack's and Microsoft's SDKs, aiohttp, azure-identity) —
    # secrets are still masked by SecretFilter.
    wanted = logging.getLevelName(level)
    for noisy in (
        "httpx",
        "httpcore",
        "aiohttp",
        "slack_bolt",
        "slack_sdk",
        "msal",
        "azure",
    ):
        logging.getLogger(noisy).setLevel(
            wanted if wanted <= logging.DEBUG else max(wanted, logging.WARNING)
        )
    return handler
