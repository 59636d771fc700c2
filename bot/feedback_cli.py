"""`threadwise feedback export [--days N]`: every stored vote as JSON lines, for evaluation.

One line per vote (one per person per answer: the latest click), oldest first, with the
conversation, the answer's id, who voted, the value, the comment, the deployment and the prompt
scope in effect. Votes are kept 35 days, so `--days` goes up to 35.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

from bot.settings import Settings
from bot.store.votes import VOTE_LOG_MAX, VOTE_TTL_SECONDS

MAX_DAYS = VOTE_TTL_SECONDS // 86_400


def _days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not 1 <= days <= MAX_DAYS:
        raise argparse.ArgumentTypeError(
            f"between 1 and {MAX_DAYS} (votes are kept {MAX_DAYS} days)"
        )
    return days


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "feedback", help="export feedback votes on answers", description=__doc__.split("\n")[0]
    )
    p.add_argument("action", choices=["export"])
    p.add_argument(
        "--days", type=_days, default=30, help=f"how far back (1-{MAX_DAYS}, default 30)"
    )
    p.set_defaults(run=_run)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if settings.redis_url is None:
        # Votes live only in Redis: the in-process store of this command would hold none.
        print("feedback export: needs REDIS_URL (votes are kept in Redis)", file=sys.stderr)
        return 2
    return asyncio.run(run(settings, args, sys.stdout))


async def run(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from bot.app import build_service

    service = build_service(settings, with_model=False)
    try:
        votes = await service.store.recent_votes(time.time() - args.days * 86_400, VOTE_LOG_MAX)
        for vote in reversed(votes):
            out.write(vote.to_json() + "\n")
        out.flush()
    finally:
        await service.close()
    return 0
