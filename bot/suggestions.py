"""Suggested prompts of the Slack assistant pane: the built-in ones, the setting, admins' own.

`SLACK_SUGGESTED_PROMPTS` is a JSON list of `{"title", "message"}`; admins change them from the
chat (`!suggestions set`), per channel, workspace or globally like system prompts, stored and
audited through the prompt store under scopes of their own (`suggestions|<scope>`), so every
replica sees a change at the next pane opened. Slack shows at most four.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

MAX_PROMPTS = 4
TITLE_MAX = 75
MESSAGE_MAX = 2_000
SCOPE_PREFIX = "suggestions|"


@dataclass(frozen=True, slots=True)
class Suggestion:
    title: str
    message: str

    def to_slack(self) -> dict[str, str]:
        return {"title": self.title, "message": self.message}


DEFAULT_SUGGESTIONS: tuple[Suggestion, ...] = (
    Suggestion("Summarise a text", "Summarise this text in five bullet points:"),
    Suggestion("Draft a message", "Help me write a short, friendly message to my team about"),
    Suggestion("Explain a concept", "Explain this to me as if I were new to the topic:"),
)


def _checked(title: object, message: object) -> Suggestion:
    if not isinstance(title, str) or not isinstance(message, str):
        raise ValueError("each suggested prompt needs a text title and message")
    title, message = title.strip(), message.strip()
    if not title or not message:
        raise ValueError("a suggested prompt has an empty title or message")
    if len(title) > TITLE_MAX or len(message) > MESSAGE_MAX:
        raise ValueError(
            f"a suggested prompt's title is at most {TITLE_MAX} characters, its message "
            f"{MESSAGE_MAX}"
        )
    return Suggestion(title, message)


def _bounded(found: Sequence[Suggestion]) -> tuple[Suggestion, ...]:
    if not found:
        raise ValueError("no suggested prompts given")
    if len(found) > MAX_PROMPTS:
        raise ValueError(f"Slack shows at most {MAX_PROMPTS} suggested prompts")
    return tuple(found)


def parse_json(raw: str) -> tuple[Suggestion, ...]:
    """The setting's form; "" means the built-in ones. Raises ValueError saying what is wrong."""
    if not raw.strip():
        return DEFAULT_SUGGESTIONS
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError('must be a JSON list of {"title": …, "message": …}') from None
    if not isinstance(data, list):
        raise ValueError('must be a JSON list of {"title": …, "message": …}')
    out = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError('each item must be {"title": …, "message": …}')
        out.append(_checked(item.get("title"), item.get("message")))
    return _bounded(out)


def parse_lines(text: str) -> tuple[Suggestion, ...]:
    """The chat form: one prompt a line, `Title | message` (a line without `|` is both)."""
    out = []
    for line in text.splitlines():
        line = line.strip().lstrip("•-* ").strip()
        if not line:
            continue
        title, bar, message = line.partition("|")
        out.append(_checked(title, message if bar else title))
    return _bounded(out)


def to_lines(prompts: Sequence[Suggestion]) -> str:
    return "\n".join(f"{p.title} | {p.message}" for p in prompts)


def stored_scope(scope: str) -> str:
    """The prompt-store scope that holds a scope's suggested prompts."""
    return SCOPE_PREFIX + scope


def resolve(
    scopes: Sequence[str], found: dict[str, str | None], default: Sequence[Suggestion]
) -> tuple[tuple[Suggestion, ...], str | None]:
    """The most specific scope's prompts (and that scope), else `default` (and None).

    A stored value that no longer parses (edited by hand) is skipped rather than shown broken.
    """
    for scope in scopes:
        raw = found.get(stored_scope(scope))
        if raw is None:
            continue
        try:
            return parse_lines(raw), scope
        except ValueError:
            continue
    return tuple(default), None


class SuggestedPrompts:
    """What a newly opened pane suggests: the most specific scope's admin-set prompts, else the
    setting's (or the built-in) ones. `store` is the prompt store (get_prompts/change_prompt)."""

    def __init__(self, store, default: Sequence[Suggestion] = DEFAULT_SUGGESTIONS) -> None:
        self.store = store
        self.default = tuple(default)

    async def for_channel(
        self, platform: str, workspace: str, channel: str
    ) -> tuple[Suggestion, ...]:
        from bot.prompts import GLOBAL, channel_scope, workspace_scope

        scopes = [
            channel_scope(platform, workspace, channel),
            workspace_scope(platform, workspace),
            GLOBAL,
        ]
        found = await self.store.get_prompts([stored_scope(s) for s in scopes])
        return resolve(scopes, found, self.default)[0]
