"""Who may run what: `BOT_ADMINS`, parsed, and `may_run`, the one access check.

Each row of the command table names its `Access`; the dispatch asks `may_run` before a row
runs (for a prompt change: once for this channel, then for the scope its options name) and
`!help` asks it for every row, so what `!help` lists is exactly what runs.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable

from bot.messages import IncomingMessage
from bot.prompts import GLOBAL, workspace_scope

log = logging.getLogger("threadwise.commands")


class Access(enum.Enum):
    """Who may run a row. Rows with `SCOPE_ADMIN` take `--workspace` / `--global`."""

    ANYONE = "anyone"
    SCOPE_ADMIN = "an admin of the prompt scope"  # checked per scope; --global: unscoped only
    WORKSPACE_ADMIN = "an admin of this workspace"


class AdminList:
    """`BOT_ADMINS`, parsed: admins everywhere and admins of one workspace or tenant.

    `slack:<user id>` / `teams:<AAD object id>` is an admin everywhere; `slack:<team id>:<user
    id>` / `teams:<tenant id>:<AAD object id>` of that workspace only. The entry is split at its
    first colon (platform) and its last (user): a Slack user id never holds a colon and an AAD
    object id is a GUID, so whatever lies between is the workspace — and a Teams *channel* id,
    which does hold colons, never appears in an entry. Everything is compared case-folded:
    Teams GUIDs differ in case between portals; Slack ids are upper-case only, so folding cannot
    make two Slack users one. An entry with an empty part grants nothing (settings refuse it).
    """

    def __init__(self, entries: Iterable[str]) -> None:
        everywhere: set[str] = set()
        scoped: set[tuple[str, str]] = set()
        for raw in entries:
            platform, _, rest = raw.strip().casefold().partition(":")
            workspace, colon, user = rest.rpartition(":")
            if not platform or not user or (colon and not workspace):
                continue
            if colon:
                scoped.add((f"{platform}:{user}", workspace_scope(platform, workspace)))
            else:
                everywhere.add(f"{platform}:{user}")
        self.everywhere = frozenset(everywhere)
        self.scoped = frozenset(scoped)


def may_run(
    admins: AdminList,
    message: IncomingMessage,
    need: Access,
    scope: str | None = None,
    *,
    operator: bool = False,
) -> bool:
    """May the sender of `message` run a row that needs `need` (on prompt `scope`)?

    Fail-closed: anything but an `Access`, a prompt change without a scope, a scope outside the
    conversation's workspace, or any error answers False. `operator` is the shell's
    `threadwise prompt` (whoever can run it already holds the service's settings).
    """
    try:
        if need is Access.ANYONE:
            return True
        if need is not Access.SCOPE_ADMIN and need is not Access.WORKSPACE_ADMIN:
            return False
        if need is Access.SCOPE_ADMIN and not scope:
            return False
        if operator:
            return True
        here = workspace_scope(message.platform, message.workspace).casefold()
        if scope is not None and scope != GLOBAL:
            target = scope.casefold()
            if target != here and not target.startswith(here + ":"):
                return False  # chat only ever names scopes of its own conversation
        if message.platform == "console":
            return True  # the terminal's user runs the service (docs/spec.md §7)
        who = message.principal.casefold()
        if who in admins.everywhere:
            return True
        if scope == GLOBAL:
            return False  # --global reaches every workspace: only unscoped entries
        return (who, here) in admins.scoped
    except Exception:
        log.exception("access check failed; refusing")
        return False
