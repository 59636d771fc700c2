"""Public surfaces and operator checks: /readyz, /metrics, the log filter, `threadwise doctor`.

- /readyz tells a caller only which dependency is not ready; the detail goes to the log.
- /metrics needs `Authorization: Bearer <METRICS_TOKEN>` when that setting is set.
- The log filter masks bearer tokens and Slack tokens that are no configured secret.
- doctor marks anonymous Teams and an evicting Redis as warnings, not as ✓.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis
from aiohttp.test_utils import TestClient, TestServer

from bot.app import build_service
from bot.cli import doctor_checks
from bot.doctor import run_doctor
from bot.logs import setup_logging
from bot.server import build_app
from bot.settings import Settings
from tests.support.helpers import free_port

JWT = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJhdWQiOiJib3QiLCJzZXJ2aWNldXJsIjoiaHR0cHM6Ly9zbXRl"
    "YW1zIn0.c2lnbmF0dXJlLXRoYXQtaXMtbG9uZy1lbm91Z2g"
)
SLACK_TOKEN = "xoxb-1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
APP_TOKEN = "xapp-1-A0123456789-1234567890123-abcdef0123456789"


def settings(**kw) -> Settings:
    base = {
        "openai_base_url": "http://127.0.0.1:9/v1/",
        "azure_openai_deployment": "d",
        "azure_openai_api_key": "k",
        "llm_max_retries": 0,
        "host": "127.0.0.1",
    }
    return Settings(**{**base, **kw})


async def client_for(s: Settings) -> tuple[object, TestClient]:
    svc = build_service(s)
    client = TestClient(TestServer(build_app(svc, [])))
    await client.start_server()
    return svc, client


class OwnRedis:
    """A `redis-server` this module owns, evicting with allkeys-lru (never the shared one)."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="tw-evict-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--maxmemory-policy", "allkeys-lru"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except (redis.RedisError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        # A user that may do everything but read the server's settings, as managed Redis does.
        client.acl_setuser(
            "limited", enabled=True, passwords=["+pw-limited"], keys=["*"], channels=["*"],
            commands=["+@all", "-info", "-config"],
        )  # fmt: skip
        client.close()

    def url(self, user: str = "") -> str:
        auth = f"{user}:pw-{user}@" if user else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def evicting_redis() -> Iterator[OwnRedis]:
    server = OwnRedis()
    try:
        yield server
    finally:
        server.stop()


# -- /readyz ----------------------------------------------------------------------------------


async def test_readyz_tells_a_caller_only_that_the_store_is_not_ready(caplog):
    port = free_port()  # nothing listens there
    svc, client = await client_for(settings(redis_url=f"redis://:pw-123456@127.0.0.1:{port}/0"))
    try:
        with caplog.at_level(logging.WARNING, logger="threadwise.server"):
            first = await client.get("/readyz")
            body = await first.text()
            second = await client.get("/readyz")
    finally:
        await client.close()
        await svc.close()
    assert first.status == second.status == 503
    assert json.loads(body) == {"status": "not ready", "reason": "store"}
    assert str(port) not in body and "127.0.0.1" not in body and "Error" not in body
    logged = [r for r in caplog.records if r.getMessage() == "not ready: store"]
    assert len(logged) == 1, "logged once per outage, not once per probe"
    assert logged[0].levelno == logging.WARNING and str(port) in logged[0].detail


async def test_readyz_stays_ready_and_warns_once_about_an_evicting_redis(
    evicting_redis, key_prefix, caplog
):
    svc, client = await client_for(
        settings(redis_url=evicting_redis.url(), redis_key_prefix=key_prefix)
    )
    try:
        with caplog.at_level(logging.INFO, logger="threadwise.server"):
            answers = [await client.get("/readyz") for _ in range(3)]
            bodies = [await r.json() for r in answers]
    finally:
        await client.close()
        await svc.close()
    assert [r.status for r in answers] == [200] * 3 and bodies == [{"status": "ready"}] * 3
    warned = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(warned) == 1 and warned[0].levelno == logging.WARNING
    assert "allkeys-lru" in warned[0].getMessage() and "noeviction" in warned[0].getMessage()


async def test_readyz_says_once_that_the_policy_could_not_be_checked(
    evicting_redis, key_prefix, caplog
):
    svc, client = await client_for(
        settings(redis_url=evicting_redis.url("limited"), redis_key_prefix=key_prefix)
    )
    try:
        with caplog.at_level(logging.INFO, logger="threadwise.server"):
            statuses = [(await client.get("/readyz")).status for _ in range(2)]
    finally:
        await client.close()
        await svc.close()
    assert statuses == [200, 200]
    said = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "could not be checked" in said[0].getMessage()


# -- /metrics ---------------------------------------------------------------------------------


async def test_metrics_need_the_bearer_token_when_one_is_set():
    svc, client = await client_for(settings(metrics_token="metrics-secret-42"))
    try:
        statuses = {}
        for name, headers in {
            "none": {},
            "wrong": {"Authorization": "Bearer metrics-secret-43"},
            "prefix": {"Authorization": "Bearer metrics-secret-4"},
            "basic": {"Authorization": "Basic metrics-secret-42"},
            "right": {"Authorization": "Bearer metrics-secret-42"},
            "lower": {"Authorization": "bearer metrics-secret-42"},
        }.items():
            r = await client.get("/metrics", headers=headers)
            statuses[name] = (r.status, await r.text())
    finally:
        await client.close()
        await svc.close()
    for name in ("none", "wrong", "prefix", "basic"):
        status, text = statuses[name]
        assert status == 401 and "threadwise_" not in text and "metrics-secret" not in text, name
    assert statuses["right"][0] == statuses["lower"][0] == 200
    assert "threadwise_" in statuses["right"][1]


async def test_metrics_stay_open_when_no_token_is_set():
    svc, client = await client_for(settings())
    try:
        r = await client.get("/metrics")
        assert r.status == 200 and "threadwise_" in await r.text()
    finally:
        await client.close()
        await svc.close()


# -- logs -------------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """The service's own log setup, with no configured secret, writing to a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    setup_logging("INFO", "json", secrets=(), stream=stream)
    try:
        yield stream
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_runtime_bearer_and_slack_tokens_are_masked_in_every_part_of_a_record(log_lines):
    log = logging.getLogger("threadwise.test")
    log.warning("outbound call with Authorization: Bearer %s", JWT)
    log.warning("slack said", extra={"request": f"token={SLACK_TOKEN}&app={APP_TOKEN}"})
    log.warning("headers %s", {"Authorization": f"Bearer {JWT}", "x": "y"})
    try:
        raise RuntimeError(f"refused bearer {JWT} and {SLACK_TOKEN}")
    except RuntimeError:
        log.exception("failed")
    out = log_lines.getvalue()
    for secret in (JWT, SLACK_TOKEN, APP_TOKEN, JWT[:20], SLACK_TOKEN[5:]):
        assert secret not in out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["msg"] == "outbound call with Authorization: Bearer ***"
    assert lines[1]["request"] == "token=xoxb-***&app=xapp-***"
    assert "'Authorization': 'Bearer ***'" in lines[2]["msg"] and "'x': 'y'" in lines[2]["msg"]
    assert "bearer ***" in lines[3]["exc"] and "xoxb-***" in lines[3]["exc"]


def test_prose_about_a_bearer_is_left_alone(log_lines):
    logging.getLogger("threadwise.test").warning("the bearer of bad news; auth is fine")
    assert json.loads(log_lines.getvalue())["msg"] == "the bearer of bad news; auth is fine"


# -- doctor -----------------------------------------------------------------------------------


async def test_doctor_marks_anonymous_teams_as_a_warning():
    out = io.StringIO()
    anonymous = settings(teams_allow_anonymous=True)
    await run_doctor(anonymous, out, doctor_checks(anonymous))
    text = out.getvalue()
    line = next(ln for ln in text.splitlines() if "TEAMS_ALLOW_ANONYMOUS" in ln)
    assert line.startswith("⚠ teams"), text
    assert "✓ teams" not in text and "loopback" in text


async def test_doctor_warns_about_a_redis_that_may_evict_markers_and_locks(evicting_redis):
    out = io.StringIO()
    await run_doctor(settings(redis_url=evicting_redis.url()), out)
    text = out.getvalue()
    assert "✓ redis" in text
    assert "⚠ eviction  maxmemory-policy allkeys-lru" in text, text
    assert "noeviction" in text.split("⚠ eviction", 1)[1]


async def test_doctor_says_when_the_eviction_policy_cannot_be_checked(evicting_redis):
    out = io.StringIO()
    await run_doctor(settings(redis_url=evicting_redis.url("limited")), out)
    text = out.getvalue()
    assert "✓ redis" in text and "– eviction  maxmemory-policy could not be checked" in text
    assert "✗ eviction" not in text


async def test_doctor_passes_a_redis_that_never_evicts(redis_url):
    server_policy = redis.Redis.from_url(redis_url).config_get("maxmemory-policy")
    if server_policy.get("maxmemory-policy") != "noeviction":
        pytest.skip("the shared Redis evicts; its settings are not ours to change")
    out = io.StringIO()
    await run_doctor(settings(redis_url=redis_url), out)
    assert "✓ eviction  maxmemory-policy noeviction" in out.getvalue()
