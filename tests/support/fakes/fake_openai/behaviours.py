"""What the fake can be scripted to do with one chat request, Azure's canned errors, and the
behaviours' JSON form (for the ``/_fake/script`` control route)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.support.fakes.fake_openai.wire import _filter_results


@dataclass
class Reply:
    """Answer with ``text`` (``None``: the default reply) and ``finish_reason``.

    ``usage`` overrides the computed usage fields (e.g. ``{"prompt_tokens": 10}``).
    """

    text: str | None = None
    finish_reason: str = "stop"
    usage: dict[str, int] | None = None


@dataclass
class Error:
    """Answer with HTTP ``status``, JSON ``body`` (a dict, or raw text) and extra ``headers``."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Hang:
    """Sleep ``seconds`` before answering (then the default behaviour); for client timeouts."""

    seconds: float


@dataclass
class StreamDies:
    """Stream ``after_chunks`` content chunks, then drop the connection without ``[DONE]``.

    On a non-streaming request the connection is dropped before any response is sent.
    """

    after_chunks: int = 1
    text: str | None = None


@dataclass
class EmptyStream:
    """A streaming request answered HTTP 200 with no events and no ``[DONE]`` (llama.cpp's
    OpenAI server when the prompt overflows its context); a non-streaming one as usual.

    Script the error the server would give the request without streaming after it, e.g.
    ``fake.script(EmptyStream(), context_length_exceeded(2048, 2100))``."""


Behaviour = Reply | Error | Hang | StreamDies | EmptyStream


def rate_limited(
    retry_after: float | None = 1, retry_after_ms: float | None = None, *, kind: str = "token"
) -> Error:
    """Azure's 429 with ``Retry-After`` (and optionally ``retry-after-ms``)."""
    seconds = retry_after if retry_after is not None else (retry_after_ms or 0) / 1000
    wait = max(1, math.ceil(seconds))
    message = (
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version "
        f"2024-10-21 have exceeded {kind} rate limit of your current AIServices S0 pricing tier. "
        f"Please retry after {wait} second{'s' if wait != 1 else ''}. Please go here: "
        "https://aka.ms/oai/quotaincrease if you would like to further increase the default "
        "rate limit."
    )
    headers: dict[str, str] = {}
    if retry_after is not None:
        headers["Retry-After"] = _num(retry_after)
    if retry_after_ms is not None:
        headers["retry-after-ms"] = _num(retry_after_ms)
    headers["x-ratelimit-remaining-requests"] = "0"
    headers["x-ratelimit-remaining-tokens"] = "0"
    return Error(429, {"error": {"code": "429", "message": message}}, headers)


def server_error(message: str | None = None) -> Error:
    """A plain 500 as the API sends it."""
    return Error(
        500,
        {
            "error": {
                "message": message
                or ("The server had an error while processing your request. Sorry about that!"),
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
    )


def invalid_unicode(*, azure: bool = True) -> Error:
    """The 500 sent when the model produced invalid (non-UTF-8) output.

    Azure: "The model produced invalid content..."; OpenAI (``azure=False``): "...generated
    invalid Unicode output...".
    """
    if azure:
        message = (
            "The model produced invalid content. Consider modifying your prompt if you are "
            "seeing this error persistently."
        )
        return Error(
            500,
            {"error": {"message": message, "type": "model_error", "param": None, "code": None}},
        )
    message = (
        "Failed to create completion as the model generated invalid Unicode output. "
        "Unfortunately, this can happen in rare situations. Consider reviewing your prompt or "
        "reducing the temperature of your request. You can retry your request, or contact us "
        "through our help center at help.openai.com if the error persists."
    )
    return Error(
        500, {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
    )


def prompt_content_filter(
    category: str = "violence", severity: str = "medium", *, jailbreak: bool = False
) -> Error:
    """Azure's 400 when the prompt trips the content filter (``code == "content_filter"``).

    ``category="jailbreak"`` (or ``jailbreak=True``) flags the prompt shield instead.
    """
    jailbreak = jailbreak or category == "jailbreak"
    categories = () if category == "jailbreak" else (category,)
    results = _filter_results(categories, severity, jailbreak=jailbreak)
    ordered = {key: results[key] for key in sorted(results)}
    return Error(
        400,
        {
            "error": {
                "message": (
                    "The response was filtered due to the prompt triggering Azure OpenAI's "
                    "content management policy. Please modify your prompt and retry. To learn "
                    "more about our content filtering policies please read our documentation: "
                    "https://go.microsoft.com/fwlink/?linkid=2198766"
                ),
                "type": None,
                "param": "prompt",
                "code": "content_filter",
                "status": 400,
                "innererror": {
                    "code": "ResponsibleAIPolicyViolation",
                    "content_filter_result": ordered,
                },
            }
        },
    )


def context_length_exceeded(max_context: int = 128000, requested: int | None = None) -> Error:
    """The 400 ``context_length_exceeded`` error."""
    requested = requested if requested is not None else max_context + 1
    return Error(
        400,
        {
            "error": {
                "message": (
                    f"This model's maximum context length is {max_context} tokens. However, your "
                    f"messages resulted in {requested} tokens. Please reduce the length of the "
                    "messages."
                ),
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    )


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_BEHAVIOUR_TYPES: dict[str, Callable[..., Behaviour]] = {
    "reply": Reply,
    "error": Error,
    "hang": Hang,
    "stream_dies": StreamDies,
    "empty_stream": EmptyStream,
    "rate_limited": rate_limited,
    "server_error": server_error,
    "invalid_unicode": invalid_unicode,
    "prompt_content_filter": prompt_content_filter,
    "context_length_exceeded": context_length_exceeded,
}


def behaviour_from_dict(spec: Mapping[str, Any] | Behaviour) -> Behaviour:
    """Build a behaviour from its JSON form: ``{"type": NAME, **arguments}``.

    NAME is one of reply, error, hang, stream_dies, rate_limited, server_error,
    invalid_unicode, prompt_content_filter, context_length_exceeded; the other keys are the
    keyword arguments of the class or constructor of the same name (e.g.
    ``{"type": "rate_limited", "retry_after": 1, "retry_after_ms": 250}``).
    """
    if isinstance(spec, Reply | Error | Hang | StreamDies | EmptyStream):
        return spec
    if not isinstance(spec, Mapping) or "type" not in spec:
        raise ValueError(f"a behaviour needs a 'type': {spec!r}")
    kwargs = {k: v for k, v in spec.items() if k != "type"}
    try:
        factory = _BEHAVIOUR_TYPES[spec["type"]]
    except KeyError:
        raise ValueError(
            f"unknown behaviour type {spec['type']!r}; known: {sorted(_BEHAVIOUR_TYPES)}"
        ) from None
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments for {spec['type']!r}: {exc}") from None


def _behaviour_to_dict(behaviour: Behaviour) -> dict[str, Any]:
    names = {
        Reply: "reply",
        Error: "error",
        Hang: "hang",
        StreamDies: "stream_dies",
        EmptyStream: "empty_stream",
    }
    return {"type": names[type(behaviour)], **behaviour.__dict__}
