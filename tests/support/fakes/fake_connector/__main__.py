"""Run the fake connector on its own: `python -m tests.support.fakes.fake_connector --port N`.

Prints `READY <url>` once listening; the `/_fake/*` control routes script and read it (see the
package docstring).
"""

from __future__ import annotations

import argparse
import asyncio

from tests.support.fakes.fake_connector.server import FakeConnector


async def _main(port: int, host: str) -> None:
    fake = FakeConnector()
    url = await fake.start(host, port)
    print(f"READY {url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Fake Bot Framework connector")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    try:
        asyncio.run(_main(args.port, args.host))
    except KeyboardInterrupt:
        pass
