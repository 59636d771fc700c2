"""Shared fixtures: a real Redis (the machine's, or one we start), a private key prefix."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from tests.support.helpers import SESSION, delete_prefix, free_port

DEFAULT_REDIS = os.environ.get("THREADWISE_TEST_REDIS", "redis://127.0.0.1:6379/0")


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


class RedisServer:
    """A `redis-server` owned by a test: can be stopped and started on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = SESSION.mkdtemp("tw-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server is not installed")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        SESSION.pids.add(self.proc.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if _answers(self.url):
                return
            time.sleep(0.05)
        self.stop(remove=True)
        raise RuntimeError("redis-server did not start")

    def stop(self, *, remove: bool = False) -> None:
        """Stop the server (it may be started again on the same port, unless `remove`)."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            SESSION.pids.discard(self.proc.pid)
            self.proc = None
        if remove:
            SESSION.rmtree(self.dir)


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """At the end of the run, no process or temp folder this session started is left.

    Torn down last (session scope, autouse): by then every test and fixture has stopped what
    it started. Anything still there is removed, and reported as an error naming it.
    """
    yield
    live, dirs = SESSION.clean_up()
    assert not (live or dirs), f"left behind by the tests: processes {live}, folders {dirs}"


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The machine's Redis when it answers, else a private `redis-server` on a free port."""
    if _answers(DEFAULT_REDIS):
        yield DEFAULT_REDIS
        return
    server = RedisServer()
    try:
        server.start()
        yield server.url
    finally:
        server.stop(remove=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A Redis only this test uses, for stopping and restarting it (outage tests)."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop(remove=True)


@pytest.fixture
async def key_prefix(redis_url: str) -> AsyncIterator[str]:
    """A random key prefix; afterwards only this test's keys are deleted."""
    prefix = f"tw-test-{uuid.uuid4().hex[:10]}:"
    yield prefix
    await delete_prefix(redis_url, prefix)


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="session")
def redis_cluster():
    """A local Redis Cluster (3 masters + 3 replicas) shared by the session's cluster tests.

    Tests use their own key prefix and must not kill its nodes (a failover test starts its own
    `LocalCluster`). Skipped when redis-server or redis-cli is not installed.
    """
    from tests.support.cluster import ClusterUnavailable, LocalCluster

    cluster = LocalCluster()
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
