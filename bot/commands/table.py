"""The command table: one row per subcommand, in the order `!help` lists them.

A row names what is typed after `!`, the handler, who may run it and its help text. The
dispatch finds the row here and `!help` lists these rows, both asking `may_run` with the row's
`Access`, so a command cannot run without being listed for the caller nor the reverse. A name
with no row is refused before any handler or store is touched.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from bot.commands.access import Access
from bot.commands.feedback import cmd_feedback
from bot.commands.general import cmd_help, cmd_reset
from bot.commands.prompt import prompt_history, reset_prompt, set_prompt, show_prompt
from bot.commands.quota import cmd_quota, quota_history, reset_quota, set_quota
from bot.commands.row import Row, UsageError, split_word
from bot.commands.suggestions import (
    reset_suggestions,
    set_suggestions,
    show_suggestions,
    suggestions_history,
)
from bot.commands.summary import cmd_summary
from bot.commands.usage import cmd_usage

TABLE: tuple[Row, ...] = (
    Row("help", cmd_help, Access.ANYONE, "the commands you can use"),
    Row("reset", cmd_reset, Access.ANYONE, "forget this conversation (and its summary)"),
    Row("summary", cmd_summary, Access.ANYONE, "what I remember of this conversation's start"),
    Row(
        "prompt show",
        show_prompt,
        Access.ANYONE,
        "the system prompt in effect here",
        default=True,
    ),
    Row(
        "prompt set",
        set_prompt,
        Access.SCOPE_ADMIN,
        "set the prompt (default: this channel)",
        args="TEXT",
    ),
    Row("prompt reset", reset_prompt, Access.SCOPE_ADMIN, "remove that prompt"),
    Row("prompt history", prompt_history, Access.SCOPE_ADMIN, "recent changes"),
    Row("usage", cmd_usage, Access.WORKSPACE_ADMIN, "tokens used today and over 30 days"),
    Row("feedback", cmd_feedback, Access.WORKSPACE_ADMIN, "👍/👎 on answers and latest comments"),
    Row(
        "suggestions show",
        show_suggestions,
        Access.ANYONE,
        "the Slack assistant pane's suggested prompts",
        default=True,
    ),
    Row(
        "suggestions set",
        set_suggestions,
        Access.SCOPE_ADMIN,
        "set them: one a line, `Title | message`",
        args="LINES",
    ),
    Row("suggestions reset", reset_suggestions, Access.SCOPE_ADMIN, "remove them"),
    Row("suggestions history", suggestions_history, Access.SCOPE_ADMIN, "recent changes"),
    Row(
        "quota show",
        cmd_quota,
        Access.ANYONE,
        "what is left of your token budgets today",
        default=True,
    ),
    Row(
        "quota set",
        set_quota,
        Access.WORKSPACE_ADMIN,
        "daily token budget (0 = unlimited)",
        args="user @someone|channel|workspace TOKENS",
    ),
    Row(
        "quota reset",
        reset_quota,
        Access.WORKSPACE_ADMIN,
        "back to the default budget",
        args="user @someone|channel|workspace",
    ),
    Row("quota history", quota_history, Access.WORKSPACE_ADMIN, "recent budget changes"),
)


class UnknownCommand(UsageError):
    """No row starts with the first word."""


def find(table: Sequence[Row], word: str, rest: str) -> tuple[Row, str]:
    """The row `!word rest` names and the text after its name, exactly as typed.

    Raises `UnknownCommand` when no row starts with `word`, `UsageError` for a subcommand that
    has no row; both suggest the closest name.
    """
    name = word.lower()
    family = [r for r in table if r.name == name or r.name.startswith(name + " ")] if name else []
    if not family:
        firsts = list(dict.fromkeys(r.name.split()[0] for r in table))
        close = difflib.get_close_matches(name, firsts, n=1)
        hint = f"Did you mean `!{close[0]}`? " if close else ""
        raise UnknownCommand(f"Unknown command `!{word}`. {hint}Try `!help`.")
    for row in family:
        if row.name == name:
            return row, rest
    sub_word, after = split_word(rest)
    sub = sub_word.lower()
    for row in family:
        if (row.default and not sub) or row.name == f"{name} {sub}":
            return row, after
    subs = [r.name.partition(" ")[2] for r in family]
    close = difflib.get_close_matches(sub, subs, n=1)
    hint = f"Did you mean `!{name} {close[0]}`? " if close else ""
    usages = [f"`{r.usage()}`" for r in family]
    listed = ", ".join(usages[:-1]) + " or " + usages[-1] if len(usages) > 1 else usages[0]
    raise UsageError(f"Unknown `!{name} {sub_word}`. {hint}Use {listed}.")
