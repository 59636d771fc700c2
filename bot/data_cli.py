"""`threadwise data export | delete` (docs/spec.md §7): the shell side of `bot/rights.py`.

Export writes JSON lines to stdout (or `--out`); delete prints what it removed as one JSON
line. Both are recorded in the data-request audit as `cli:<os user>` and logged, never with
message text.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import TextIO

from bot.rights import DataRights, feedback_sources, parse_user
from bot.settings import Settings, SettingsError
from bot.store import make_store


def add_data_parser(sub) -> None:
    data = sub.add_parser("data", help="export or erase a user's data, or erase a conversation")
    verbs = data.add_subparsers(dest="data_action", required=True)
    export = verbs.add_parser("export", help="JSON lines of everything stored about a user")
    export.add_argument("--user", required=True, help="<platform>:<workspace>:<user id>")
    export.add_argument("--out", help="write to this file instead of stdout")
    delete = verbs.add_parser("delete", help="erase a user's data or a whole conversation")
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", help="<platform>:<workspace>:<user id>")
    which.add_argument("--conversation", help="a conversation key, e.g. slack:T1:C1:1700.1")
    data.set_defaults(run=_run)


def register(sub) -> None:
    """`threadwise data export|delete` (bot/cli.py registers each command module so)."""
    add_data_parser(sub)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import sys

    return asyncio.run(run_data(settings, args, sys.stdout))


async def run_data(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    if settings.redis_url is None:
        raise SettingsError("REDIS_URL: not set; without Redis nothing outlives the process")
    try:
        user = parse_user(args.user) if args.user else None
    except ValueError as exc:
        raise SettingsError(f"--user: {exc}") from None
    actor = f"cli:{getpass.getuser()}"
    store = make_store(settings)
    rights = DataRights(store, sources=feedback_sources(store))
    try:
        if args.data_action == "export":
            assert user is not None
            lines: list[str] = []
            counts = await rights.export(
                user, lambda rec: lines.append(json.dumps(rec, ensure_ascii=False) + "\n"), actor
            )
            await asyncio.to_thread(_write, args.out, out, lines)
            print(f"exported {json.dumps(counts)}", file=sys.stderr)
            return 0
        if user is not None:
            print(json.dumps(await rights.delete_user(user, actor)), file=out)
            return 0
        found = await rights.delete_conversation(args.conversation, actor)
        print(json.dumps({"conversation": args.conversation, "found": found}), file=out)
        return 0 if found else 1
    finally:
        await store.close()


def _write(path: str | None, out: TextIO, lines: list[str]) -> None:
    if path is None:
        out.writelines(lines)
        out.flush()
        return
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
