"""`serve --workers N` on the command line: what it accepts and what it refuses up front."""

from __future__ import annotations

import pytest

from bot.cli import _parser, main


def test_workers_default_to_one_and_take_a_positive_number():
    assert _parser().parse_args(["serve"]).workers == 1
    assert _parser().parse_args(["serve", "--workers", "3"]).workers == 3
    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["serve", "--workers", bad])


def test_more_socket_mode_workers_than_slack_allows_are_refused(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    monkeypatch.setenv("AZURE_OPENAI_DEPLOYMENT", "gpt-4o")
    assert main(["serve", "--workers", "11"]) == 2
    err = capsys.readouterr().err
    assert "--workers 11" in err and "at most 10" in err


def test_a_worker_whose_parent_is_pid_1_keeps_running(monkeypatch):
    """In a container `serve --workers N` is often pid 1: its workers must not take that for
    a dead parent (only a parent pid other than the one it was given means that)."""
    import ctypes
    import logging
    import os
    import signal

    from bot import workers

    class NoPrctl:  # the test runner itself must not get a parent-death signal
        def __init__(self, *a, **kw) -> None:
            self.prctl = lambda *a: 0

    killed: list[int] = []
    monkeypatch.setattr(ctypes, "CDLL", NoPrctl)
    monkeypatch.setattr(os, "getppid", lambda: 1)
    monkeypatch.setattr(os, "kill", lambda pid, sig: killed.append(sig))
    monkeypatch.setenv(workers.SUPERVISOR_ENV, "1")
    root = logging.getLogger()
    before = {h: list(h.filters) for h in root.handlers}
    try:
        workers.become_worker(0)
        assert killed == []
        monkeypatch.setenv(workers.SUPERVISOR_ENV, "4242")  # the parent it was given is gone
        workers.become_worker(0)
        assert killed == [signal.SIGTERM]
    finally:
        for h, filters in before.items():
            h.filters[:] = filters
