"""`!` commands (docs/spec.md §5), errbot-style: plain functions in one table, one access check.

`table.TABLE` holds one row per subcommand (`help`, `reset`, `prompt show`, `prompt set`,
`prompt reset`, `prompt history`, `usage`, `quota show|set|reset|history`), each naming its
handler, who may run it (`Access`) and its help text. `access.may_run` is the only access
check: the dispatch asks it before a row runs and `!help` asks it for every row, so what
`!help` lists is exactly what runs.

Layers, each importing only those above it: `access` (BOT_ADMINS, `may_run`), `row` (the row
and context types, option parsing), the handlers (`general`, `prompt`, `quota`, `usage`), `table`,
`dispatch` (`Commands`).
"""

from __future__ import annotations

from bot.commands.access import Access, AdminList, may_run
from bot.commands.dispatch import CommandResult, Commands, is_command
from bot.commands.row import Context, Row
from bot.commands.table import TABLE

__all__ = [
    "TABLE",
    "Access",
    "AdminList",
    "CommandResult",
    "Commands",
    "Context",
    "Row",
    "is_command",
    "may_run",
]
