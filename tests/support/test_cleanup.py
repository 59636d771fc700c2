"""The test helpers stop what they start and remove their temp folders, even when a test fails.

Only what these tests start is looked at (other people run tests on the same machine).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import RedisServer
from tests.support.fakes.fake_openai import FakeOpenAI
from tests.support.helpers import SESSION, ServeProcess, Started, run_cli


def gone(pid: int) -> bool:
    """Our child `pid` has exited and been reaped (never true of a stranger's process)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def exists(path: str) -> bool:
    return os.path.exists(path)


def serve_env(fake: FakeOpenAI) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "k",
        "AZURE_OPENAI_DEPLOYMENT": "d",
        "TEAMS_ALLOW_ANONYMOUS": "true",
    }


async def test_a_failing_test_body_still_stops_serve_and_removes_its_folder():
    async with FakeOpenAI() as fake:
        with pytest.raises(AssertionError, match="the test failed"):
            async with ServeProcess(serve_env(fake)) as svc:
                pid, cwd = svc.proc.pid, svc._cwd
                assert exists(cwd) and pid in SESSION.pids
                raise AssertionError("the test failed")
    assert gone(pid) and not exists(cwd)
    assert pid not in SESSION.pids and cwd not in SESSION.dirs


async def test_a_serve_that_exits_at_start_leaves_no_folder():
    svc = ServeProcess({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1/"})  # no platform: exits 2
    with pytest.raises(RuntimeError, match="serve exited early"):
        await svc.start()
    assert gone(svc.proc.pid) and not exists(svc._cwd)


async def test_a_serve_that_is_not_healthy_in_time_is_killed():
    async with FakeOpenAI() as fake:
        svc = ServeProcess(serve_env(fake), ready_timeout=0)
        with pytest.raises(RuntimeError, match="did not become healthy"):
            await svc.start()
    assert gone(svc.proc.pid) and not exists(svc._cwd)


async def test_a_cli_run_that_outlives_its_timeout_is_killed(tmp_path):
    before = set(SESSION.pids)
    with pytest.raises(TimeoutError):
        await run_cli(["chat"], {}, cwd=tmp_path, timeout=0)
    assert SESSION.pids == before  # started, killed and reaped


def test_a_redis_server_removes_its_folder_when_stopped_for_good():
    server = RedisServer()
    try:
        server.start()
        pid = server.proc.pid
        server.stop()  # stopped to be restarted: the folder stays
        assert os.path.isdir(server.dir)
    finally:
        server.stop(remove=True)
    assert gone(pid) and not os.path.exists(server.dir)
    assert server.dir not in SESSION.dirs


def test_the_session_record_finds_and_removes_what_a_test_left():
    """What `nothing_left_behind` (tests/conftest.py) does at the end of the run."""
    record = Started()  # a record of its own: the session's holds running fixtures
    left = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record.pids.add(left.pid)
    folder = record.mkdtemp("tw-serve-")
    assert record.leftovers() == ([left.pid], [folder])
    assert record.clean_up() == ([left.pid], [folder])
    assert left.poll() is not None and not os.path.exists(folder)
    assert record.leftovers() == ([], [])
