"""`threadwise serve --workers N`: N processes answering on one port, one event loop each.

One process runs one event loop on one core; a machine with more cores runs more processes.
The parent started by `serve --workers N` serves nothing itself: it starts N children
(`python -m bot serve --worker-id I`), each a complete service (its own Redis pool, model and
Slack clients) that binds the same host and port with SO_REUSEPORT, so the kernel spreads new
connections across them. They share nothing but Redis, which already makes several replicas
behave as one (exactly-once claims, per-conversation order), so a post delivered to two workers
is answered once, as it would be by two machines.

Signals: SIGTERM or SIGINT to the parent is passed to every worker; each stops taking events,
finishes the replies in flight and exits (bot/server.py), and the parent exits when all have.
A worker that exits while the others serve (a crash, a failed start) is logged with its id and
exit status; the parent then drains the others and exits non-zero, so the platform's restart
policy (Container Apps, systemd, Kubernetes) restarts the whole replica rather than the parent
hiding a process that keeps dying.

Socket Mode: each worker opens its own Socket Mode connection and Slack spreads events across
an app's connections; Slack allows at most 10 per app, so more workers than that are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys

from bot.settings import Settings, SettingsError

log = logging.getLogger("threadwise.workers")

SOCKET_MODE_MAX_CONNECTIONS = 10  # Slack's limit of concurrent Socket Mode connections per app
SUPERVISOR_ENV = "THREADWISE_SUPERVISOR_PID"  # the parent's pid, for the worker to check
KILL_AFTER_SECONDS = 90.0  # a worker's own grace (60 s in bot/server.py) plus a margin


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return n


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """`serve`'s options: `--workers N`, and the worker id the parent gives each child."""
    serve.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="processes sharing the port, one event loop (one core) each (default: 1)",
    )
    serve.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)


def check_workers(settings: Settings, n: int) -> None:
    """Refuse what cannot work with `n` workers, before any of them starts."""
    if settings.slack_enabled and settings.slack_app_token is not None:
        if n > SOCKET_MODE_MAX_CONNECTIONS:
            raise SettingsError(
                f"--workers {n}: Socket Mode opens one connection per worker and Slack allows "
                f"at most {SOCKET_MODE_MAX_CONNECTIONS} per app; use fewer workers (or HTTP "
                "mode: unset SLACK_APP_TOKEN)"
            )


class _WorkerFilter(logging.Filter):
    def __init__(self, worker: int) -> None:
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


def become_worker(worker: int) -> None:
    """Set this process up as worker `worker`: its id on every log line, and it ends with
    the parent (Linux: the kernel sends SIGTERM if the parent dies without stopping it)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WorkerFilter(worker))
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            pr_set_pdeathsig = 1
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
            # The parent was gone before the line above ran. (Compared with the pid the parent
            # gave, not with 1: in a container the parent itself is often pid 1.)
            if str(os.getppid()) != os.environ.get(SUPERVISOR_ENV, str(os.getppid())):
                os.kill(os.getpid(), signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


async def supervise(settings: Settings, n: int) -> int:
    """Start `n` workers, pass on SIGTERM/SIGINT, wait for all; non-zero if one failed."""
    check_workers(settings, n)
    print(
        f"threadwise serving on http://{settings.host}:{settings.port} with {n} workers",
        flush=True,
    )
    children: dict[int, asyncio.subprocess.Process] = {}
    for i in range(n):
        children[i] = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            "--worker-id",
            str(i),
            env={**os.environ, SUPERVISOR_ENV: str(os.getpid())},
        )
    log.info("workers started", extra={"workers": n, "pids": [p.pid for p in children.values()]})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waits = {asyncio.ensure_future(p.wait()): i for i, p in children.items()}
    stopping = asyncio.ensure_future(stop.wait())
    failed: int | None = None
    draining = False
    deadline: float | None = None
    try:
        while waits:
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            done, _ = await asyncio.wait(
                [*waits, stopping], timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # past the deadline: workers that still run are stuck
                for i in waits.values():
                    log.error("worker did not stop in time; killed", extra={"worker": i})
                    with contextlib.suppress(ProcessLookupError):
                        children[i].kill()
                failed = failed or 1
                deadline = None
                continue
            for fut in done:
                if fut is stopping:
                    continue
                i = waits.pop(fut)
                code = fut.result()
                if draining and code == 0:
                    log.info("worker stopped", extra={"worker": i})
                    continue
                log.error(
                    "worker exited unexpectedly" if not draining else "worker failed to stop",
                    extra={"worker": i, "status": _describe(code)},
                )
                failed = failed or (code if code > 0 else 1)
            if (stopping in done or failed is not None) and not draining:
                draining = True
                deadline = loop.time() + KILL_AFTER_SECONDS
                log.info("stopping workers", extra={"workers": len(waits)})
                for i in waits.values():
                    with contextlib.suppress(ProcessLookupError):
                        children[i].send_signal(signal.SIGTERM)
    finally:
        stopping.cancel()
        for p in children.values():  # only if the parent itself is failing
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
    log.info("stopped", extra={"failed": failed is not None})
    return failed or 0
