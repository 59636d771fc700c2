"""Checks of single setting values, kept apart from the Settings class so it stays readable.

Each returns the fix to show (or a normalised value); `bot/settings.py` turns a problem into
the one line start-up prints.
"""

from __future__ import annotations

from urllib.parse import urlsplit


def azure_resource_url(value: str) -> str:
    """AZURE_OPENAI_ENDPOINT as the resource URL, from any of the forms the portal shows.

    `https://<resource>.openai.azure.com` is what the v1 base URL is built from; the same with
    `/openai/v1/`, or the portal's "Target URI" (`/openai/deployments/<name>/chat/completions
    ?api-version=…`), is reduced to it. Any other path is refused with the form to use.
    """
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("needs an http(s):// URL, https://<resource>.openai.azure.com")
    path = parts.path.rstrip("/")
    resource = f"{parts.scheme}://{parts.netloc}"
    if path in ("", "/openai", "/openai/v1") or path.startswith("/openai/deployments/"):
        return resource
    raise ValueError(
        f"give the resource URL without a path, {resource} (the v1 path is added); for "
        "another OpenAI-compatible server set OPENAI_BASE_URL to its /v1/ URL instead"
    )


def admin_entries_problem(value: str) -> str | None:
    """What is wrong with a BOT_ADMINS list, naming the first bad entry once; None when fine."""
    for entry in filter(None, (e.strip() for e in value.split(","))):
        # platform:user or platform:workspace:user (ids hold no colon; bot/commands/access.py)
        platform, *ids = entry.split(":")
        if platform not in ("slack", "teams", "console") or not 1 <= len(ids) <= 2:
            ids = []
        if not ids or not all(ids):
            return (
                "entries look like slack:<user id>, teams:<AAD id>, slack:<team id>:<user id>"
                f" or teams:<tenant id>:<AAD id>: {entry!r}"
            )
    return None


def redis_url_problem(url: str, auth: str) -> str | None:
    """With REDIS_AUTH=entra a user or password in REDIS_URL would be ignored: refuse it."""
    if auth == "entra":
        parts = urlsplit(url)
        if parts.password or parts.username:
            return (
                "REDIS_URL: with REDIS_AUTH=entra leave the user and password out of the URL "
                "(the managed identity's Entra token is the password)"
            )
    return None
