"""Run the fake Slack on its own: `python -m tests.support.fakes.fake_slack --port 0`.

Prints `READY http://127.0.0.1:PORT/api/` (the SLACK_API_URL) once listening; stops on SIGTERM
or SIGINT. The `/_fake/*` control routes script and read it (see the package docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from tests.support.fakes.fake_slack.server import FakeSlack
from tests.support.fakes.fake_slack.state import DEFAULT_TOKEN


async def _main(args: argparse.Namespace) -> None:
    users = json.loads(args.users) if args.users else {"U1": "Ann", "U2": "Bob"}
    slack = FakeSlack(host=args.host, port=args.port, token=args.token, users=users)
    await slack.start()
    print(f"READY {slack.api_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await slack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local fake of the Slack Web API")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--users", help='JSON: {"U1": "Ann", ...}')
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
