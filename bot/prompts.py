"""Scoped system prompts (docs/spec.md §5): channel, workspace/tenant, global, then the default.

Prompts are read from the store on every turn (in the same round trip as the history), so a
change reaches every replica on its very next message with no cache to invalidate.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from bot.messages import IncomingMessage
from bot.store import AuditRecord, Store
from bot.tokens import TokenCounter

GLOBAL = "global"
DEFAULT = "default"
_REPLY_CHAIN = re.compile(";messageid=", re.IGNORECASE)


def channel_scope(platform: str, workspace: str, channel: str) -> str:
    # A Teams channel conversation id names one reply chain (";messageid=…"); a channel's
    # prompt belongs to the whole channel.
    return f"{platform}:{workspace}:{_REPLY_CHAIN.split(channel, 1)[0]}"


def workspace_scope(platform: str, workspace: str) -> str:
    return f"{platform}:{workspace}"


def scopes_for(message: IncomingMessage) -> list[str]:
    """Most specific first."""
    return [
        channel_scope(message.platform, message.workspace, message.channel),
        workspace_scope(message.platform, message.workspace),
        GLOBAL,
    ]


def scope_label(scope: str) -> str:
    if scope == GLOBAL:
        return "global"
    if scope == DEFAULT:
        return "default (SYSTEM_PROMPT)"
    if scope.count(":") == 1:
        return "tenant" if scope.startswith("teams:") else "workspace"
    return "channel"


@dataclass(frozen=True, slots=True)
class Effective:
    text: str
    scope: str  # a scope string, or DEFAULT


class PromptTooLong(Exception):
    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"{tokens} tokens > {limit}")
        self.tokens = tokens
        self.limit = limit


class Prompts:
    def __init__(
        self, store: Store, counter: TokenCounter, default_prompt: str, max_tokens: int
    ) -> None:
        self.store = store
        self.counter = counter
        self.default_prompt = default_prompt
        self.max_tokens = max_tokens

    def resolve(self, scopes: list[str], found: dict[str, str | None]) -> Effective:
        for scope in scopes:
            text = found.get(scope)
            if text is not None:
                return Effective(text, scope)
        return Effective(self.default_prompt, DEFAULT)

    async def effective(self, scopes: list[str]) -> Effective:
        return self.resolve(scopes, await self.store.get_prompts(scopes))

    async def set(self, scope: str, text: str, who: str, who_name: str) -> str | None:
        tokens = await self.counter.acount(text)
        if tokens > self.max_tokens:
            raise PromptTooLong(tokens, self.max_tokens)
        return await self.store.change_prompt(
            AuditRecord(time.time(), scope, who, who_name, "set", None, text)
        )

    async def reset(self, scope: str, who: str, who_name: str) -> str | None:
        """Remove a scope's prompt; returns the removed text, None (and no audit) if unset."""
        if (await self.store.get_prompts([scope])).get(scope) is None:
            return None  # nothing changes, so nothing to audit
        return await self.store.change_prompt(
            AuditRecord(time.time(), scope, who, who_name, "reset", None, None)
        )

    async def history(self, scope: str, limit: int = 10) -> list[AuditRecord]:
        return await self.store.prompt_history(scope, limit)
