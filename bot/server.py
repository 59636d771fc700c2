"""The one aiohttp server: health, readiness, metrics, and the routes adapters mount."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
import signal

from aiohttp import web

from bot.app import Service
from bot.messages import Adapter
from bot.store import StoreUnavailable

log = logging.getLogger("threadwise.server")

MAX_BODY_BYTES = 1024 * 1024  # Slack and Teams payloads are a few KB; refuse floods early (413)
SERVICE_KEY = web.AppKey("service", Service)
DRAINING_KEY = web.AppKey("draining", dict)
PROBE_KEY = web.AppKey("probe", dict)  # what readiness probes logged already
ADAPTERS_KEY = web.AppKey("adapters", list)


class StartFailed(Exception):
    """An adapter could not start (a refused token, an unreachable platform): one line, why."""


@web.middleware
async def _guard(request: web.Request, handler):
    """New events are refused while draining; no request ever turns into a 500 page."""
    if request.method == "POST" and request.app[DRAINING_KEY].get("on"):
        return web.json_response({"error": "shutting down"}, status=503)
    try:
        return await handler(request)
    except web.HTTPException as exc:
        # Answered with a fresh response, not re-raised: aiohttp keeps a raised exception in a
        # reference cycle (exception → traceback → frames → the request and its buffered body),
        # so every refused oversized body would stay in memory until a full GC pass found it.
        return web.Response(
            status=exc.status, reason=exc.reason, text=exc.text, headers=exc.headers
        )
    except (ValueError, UnicodeDecodeError) as exc:
        log.warning("bad request body: %s", type(exc).__name__)
        return web.json_response({"error": "malformed request"}, status=400)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


async def readyz(request: web.Request) -> web.Response:
    """Public: says only *what* is not ready; why (hosts, ports, errors) goes to the log."""
    service = request.app[SERVICE_KEY]
    probe = request.app[PROBE_KEY]
    try:
        async with asyncio.timeout(2):
            await service.store.ping()
    except (StoreUnavailable, TimeoutError) as exc:
        detail = str(exc) or "Redis did not answer within 2 s"
        if detail != probe.get("down"):  # once per outage (and cause), not once per probe
            log.warning("not ready: store", extra={"detail": detail})
            probe["down"] = detail
        return web.json_response({"status": "not ready", "reason": "store"}, status=503)
    if probe.pop("down", None) is not None:
        log.info("ready: store answers again")
    if not probe.get("eviction_checked"):
        await _check_eviction(service, probe)
    if request.app[DRAINING_KEY].get("on"):
        return web.json_response({"status": "not ready", "reason": "shutting down"}, status=503)
    for adapter in request.app[ADAPTERS_KEY]:
        # An adapter that can tell (Slack: whether auth.test has answered) says if it can
        # handle events; one that cannot is ready once started.
        ready = getattr(adapter, "ready", None)
        if ready is not None and not await ready():
            return web.json_response({"status": "not ready", "reason": adapter.name}, status=503)
    return web.json_response({"status": "ready"})


async def _check_eviction(service: Service, probe: dict) -> None:
    """Warn once if Redis may evict exactly-once markers and locks before their TTL.

    Done by the first successful readiness probe, not at each turn. Still ready: the service
    works, but a redelivered post could be answered twice and a held lock vanish.
    """
    probe["eviction_checked"] = True  # concurrent probes do not check twice
    try:
        async with asyncio.timeout(2):
            policy = await service.store.eviction_policy()
    except (StoreUnavailable, TimeoutError):
        probe["eviction_checked"] = False  # ask again at the next probe
        return
    if policy is None:
        log.info("Redis maxmemory-policy could not be checked (INFO and CONFIG refused)")
    elif policy not in ("", "noeviction"):
        log.warning(
            "Redis maxmemory-policy is %s: under memory pressure it may evict exactly-once "
            "markers and conversation locks before their TTL (duplicate or overlapping "
            "answers); set it to noeviction",
            policy,
        )


async def metrics(request: web.Request) -> web.Response:
    token = request.app[SERVICE_KEY].settings.metrics_token
    if token is not None and token.get_secret_value():
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        # compare_digest on every request, whatever was sent: no early exit to time.
        ok = hmac.compare_digest(given.strip().encode(), expected)
        if not ok or scheme.lower() != "bearer":
            return web.json_response(
                {"error": "unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    body = request.app[SERVICE_KEY].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


def build_app(service: Service, adapters: list[Adapter]) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_guard])
    app[SERVICE_KEY] = service
    app[DRAINING_KEY] = {"on": False}
    app[PROBE_KEY] = {}
    app[ADAPTERS_KEY] = list(adapters)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    for adapter in adapters:
        adapter.mount(app)
    return app


async def serve(
    service: Service, adapters: list[Adapter], *, grace: float = 60.0, reuse_port: bool = False
) -> None:
    """Run until SIGTERM/SIGINT, then stop taking events and finish the replies in flight.

    `reuse_port`: one of several workers binding the same port (SO_REUSEPORT, bot/workers.py).
    """
    settings = service.settings
    app = build_app(service, adapters)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await service.store.warm()
    # Senders open connections in bursts (Slack retries, a busy minute): a listen queue deeper
    # than aiohttp's 128 keeps a burst from being refused (bench/README.md).
    site = web.TCPSite(
        runner, settings.host, settings.port, backlog=1024, reuse_port=reuse_port or None
    )
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started: list[Adapter] = []
    try:
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
    except Exception as exc:
        # Nothing was served yet: close what was opened and say why in one line (the CLI
        # prints it), rather than a traceback from deep inside the platform SDK.
        for adapter in reversed(started):
            try:
                await adapter.close()
            except Exception:
                log.exception("adapter close failed")
        await runner.cleanup()
        await service.close()
        raise StartFailed(f"{adapter.name} did not start: {exc}") from exc
    # What start-up built (modules, clients, apps) lives as long as the process: freeze it out
    # of the cyclic GC, so collections scan only what turns allocate, not every start-up object
    # too (full-collection pauses were the ack latency tail; bench/README.md).
    gc.collect()
    gc.freeze()
    # A turn's objects live as long as the model takes (a second or more), so under load the
    # default thresholds (700, 10, 10) promote nearly all of them and keep rescanning them.
    # Collecting the young generation every 20,000 allocations lets most of a turn die before
    # it is ever scanned (bench/README.md has the numbers).
    gc.set_threshold(20_000, 20, 10)
    log.info("listening", extra={"host": settings.host, "port": settings.port})
    try:
        await stop.wait()
    finally:
        app[DRAINING_KEY]["on"] = True
        in_flight = service.responder.in_flight
        log.info("shutting down", extra={"in_flight": in_flight})
        # Stop intake everywhere (Socket Mode too), finish replies — they still need the
        # adapters' clients to post — and only then close the adapters.
        for adapter in adapters:
            try:
                await adapter.stop()
            except Exception:
                log.exception("adapter stop failed")
        left = await service.responder.drain(grace)
        if left:
            log.error("replies unfinished at shutdown", extra={"unfinished": left})
        for adapter in adapters:
            try:
                await adapter.close()
            except Exception:
                log.exception("adapter close failed")
        await runner.cleanup()
        await service.close()
        log.info("stopped")
