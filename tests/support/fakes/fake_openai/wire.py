"""Wire-format pieces shared by the fake's modules: recorded requests, message text, stream
chunking, compact JSON, the usage block, Azure's filter results and dropping a connection."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

DEFAULT_MODEL = "gpt-4o"
CONTENT_FILTER_CATEGORIES = ("hate", "self_harm", "sexual", "violence")
_JSON_SEPARATORS = (",", ":")


@dataclass
class RecordedRequest:
    """One request the fake received (control routes are not recorded)."""

    method: str
    path: str
    headers: CIMultiDict[str]
    body: Any
    received_at: float = field(default_factory=time.time)

    @property
    def messages(self) -> list[dict[str, Any]] | None:
        return self.body.get("messages") if isinstance(self.body, dict) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": self.body,
            "received_at": self.received_at,
        }


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


def _last_user_text(messages: list[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


_WORDISH = re.compile(r"\s*\S{1,12}|\s+")


def split_chunks(text: str) -> list[str]:
    """Split a reply into small word-ish stream chunks; ``"".join(...)`` gives ``text`` back."""
    return _WORDISH.findall(text)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=_JSON_SEPARATORS)


def _filter_results(
    filtered: Iterable[str] = (), severity: str = "medium", *, jailbreak: bool = False
) -> dict[str, Any]:
    flagged = set(filtered)
    results: dict[str, Any] = {}
    for category in CONTENT_FILTER_CATEGORIES:
        hit = category in flagged
        results[category] = {"filtered": hit, "severity": severity if hit else "safe"}
    return results | ({"jailbreak": {"filtered": jailbreak, "detected": jailbreak}})


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _drop(request: web.Request) -> None:
    """Close the connection mid-response: buffered bytes are flushed, the body never ends."""
    transport = request.transport
    if transport is not None:
        transport.close()
