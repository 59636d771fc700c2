"""Run the fake standalone: ``python -m tests.support.fakes.fake_openai --port 0``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from tests.support.fakes.fake_openai.server import FakeOpenAI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.fakes.fake_openai",
        description="Fake Azure OpenAI v1 Chat Completions server.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--first-token-delay", type=float, default=0.0)
    parser.add_argument("--tokens-per-second", type=float, default=None)
    parser.add_argument("--reply", default=None, help="fixed reply (default: echo)")
    parser.add_argument("--model", default=None)
    parser.add_argument("--api-key", default=None, help="require this key")
    parser.add_argument("--context-window", type=int, default=None)
    parser.add_argument("--no-azure", action="store_true", help="plain OpenAI shapes")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeOpenAI(
        reply=args.reply,
        delay=args.delay,
        first_token_delay=args.first_token_delay,
        tokens_per_second=args.tokens_per_second,
        model=args.model,
        azure=not args.no_azure,
        api_key=args.api_key,
        context_window=args.context_window,
        host=args.host,
        port=args.port,
    )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopping.set)
    async with fake:
        print(f"READY {fake.base_url}", flush=True)
        await stopping.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parse_args(argv)))
    sys.exit(0)


if __name__ == "__main__":
    main()
