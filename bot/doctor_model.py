"""`doctor`'s model check: one-token call, then what a real server may hide.

Fix lines name the setting actually in use (`OPENAI_BASE_URL` or `AZURE_OPENAI_ENDPOINT`;
Azure's role only for Azure with Entra ID). Two suspicions are reported as warnings, not
failures, because replies still work: a server that answers for any model name (a second call
with a deployment name that cannot exist succeeded, so a misspelt `AZURE_OPENAI_DEPLOYMENT`
would go unnoticed), and a server that ignores the reply cap (asked for one token, it
generated many; Threadwise cuts replies itself, docs/spec.md §4).
"""

from __future__ import annotations

import asyncio
import uuid

from bot.doctor import Check
from bot.model_errors import CREDENTIALS_FIX, ModelError, classify
from bot.settings import Settings, SettingsError

# More than this many tokens from a one-token call: the server does not read the cap field.
CAP_IGNORED_ABOVE = 2


def _fixes(settings: Settings, kind: str, detail: str) -> str:
    endpoint = "OPENAI_BASE_URL" if settings.openai_base_url else "AZURE_OPENAI_ENDPOINT"
    azure = not settings.openai_base_url
    if kind == "auth":
        if settings.azure_openai_api_key is not None:
            return "the key was refused: check AZURE_OPENAI_API_KEY / OPENAI_API_KEY"
        if azure:
            return (
                "the identity was refused: grant 'Cognitive Services OpenAI User' to it on the "
                "Azure OpenAI account (role assignments take a few minutes)"
            )
        return (
            f"the server at {endpoint} refused the Entra ID token: set OPENAI_API_KEY to the "
            "key it expects"
        )
    return {
        "credentials_unavailable": CREDENTIALS_FIX,
        "not_found": f"no such deployment at {endpoint}: check AZURE_OPENAI_DEPLOYMENT",
        "unreachable": f"cannot connect: check {endpoint} and that the server is running",
        "timeout": f"connected, but no answer in time: check {endpoint} and the server's load",
        "rate_limited": "the deployment answered 429 (rate limited): raise its quota or wait",
        "server_error": "the server answered with an error (5xx): look at its logs",
        "empty_stream": "the server ended the reply without a word: look at its logs",
    }.get(kind, f"the call failed ({kind}: {detail[:120]})")


async def check_model(settings: Settings) -> list[Check]:
    try:
        settings.require_model()
    except SettingsError as exc:
        name = str(exc).split(":")[0]
        return [Check("model", False, "settings", f"set {name}")]
    from bot.llm import make_llm
    from bot.tokens import TokenCounter

    llm = make_llm(settings, count=TokenCounter().count)
    tried = (
        f"one-token call to deployment {settings.azure_openai_deployment!r} at "
        f"{settings.model_base_url} ({'key' if settings.azure_openai_api_key else 'Entra ID'})"
    )
    limit = min(settings.llm_timeout_seconds, 30)
    try:
        try:
            async with asyncio.timeout(limit):
                probe = await llm.probe()
        except (ModelError, TimeoutError) as exc:
            err = exc if isinstance(exc, ModelError) else ModelError("timeout")
            return [Check("model", False, tried, _fixes(settings, err.kind, err.detail))]
        except Exception as exc:  # e.g. no Entra credential available on this machine
            err = classify(exc)
            return [Check("model", False, tried, _fixes(settings, err.kind, err.detail))]
        checks = [Check("model", True, tried + f" → {probe.model}")]
        if probe.completion_tokens > CAP_IGNORED_ABOVE:
            checks.append(
                Check(
                    "model",
                    True,
                    f"asked for 1 token ({llm.cap_field}), the server generated "
                    f"{probe.completion_tokens}",
                    f"the server ignores {llm.cap_field}: Threadwise stops replies at "
                    "MAX_RESPONSE_TOKENS itself; set LLM_CAP_FIELD to the field it reads "
                    "(max_tokens or max_completion_tokens)",
                    required=False,
                    warn=True,
                )
            )
        nonsense = f"threadwise-doctor-no-such-deployment-{uuid.uuid4().hex[:8]}"
        try:
            async with asyncio.timeout(limit):
                await llm.probe(nonsense)
        except (ModelError, TimeoutError):
            pass  # refused, as it should be (or no answer: nothing learnt)
        else:
            checks.append(
                Check(
                    "model",
                    True,
                    f"the server also answered for deployment {nonsense!r}",
                    "it answers for any model name, so a misspelt AZURE_OPENAI_DEPLOYMENT "
                    "would go unnoticed: check the name against the server's models",
                    required=False,
                    warn=True,
                )
            )
        return checks
    finally:
        await llm.close()
