"""The benchmarks run (in their short smoke mode) and write their JSON; their numbers are not
checked here — CI machines are too noisy for that. Needs Redis, like the end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support.helpers import ROOT

pytestmark = pytest.mark.e2e

BENCHES = [
    "service_overhead",
    "throughput",
    "history_cost",
    "redis_cost",
    "first_token",
    "memory",
    "text_cleaning",
    "summary_cost",
    "lean",
    "scale_out",
]


@pytest.mark.timeout(300)
def test_every_bench_runs_in_smoke_mode_and_writes_json(redis_url, tmp_path):
    env = {**os.environ, "THREADWISE_BENCH_REDIS": redis_url, "BENCH_RESULTS": str(tmp_path)}
    env.pop("BENCH_PROFILE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "Threadwise benchmarks (SMOKE" in proc.stdout
    for name in [*BENCHES, "summary"]:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        assert data["bench"] == name and data["machine"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["failed"] == [] and summary["benches"] == BENCHES
