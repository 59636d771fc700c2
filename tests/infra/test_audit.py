"""CI's pip-audit wrapper fails on a vulnerability and skips, in one line, when it cannot reach
the advisory service.

The wrapper is driven through a stub pip-audit for every outcome and through the real
pip-audit against a local OSV-style server for the ones that depend on its output format.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.support.deploy import AUDIT, LOCK


def _load_audit():
    spec = importlib.util.spec_from_file_location("ci_audit", AUDIT)
    assert spec and spec.loader, f"{AUDIT} is missing"
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


audit = _load_audit()


# ------------------------------------------------------------------------------------------
# The audit wrapper: outcomes
# ------------------------------------------------------------------------------------------


def _report(*deps: dict[str, object]) -> dict[str, object]:
    return {"dependencies": list(deps), "fixes": []}


CLEAN_DEP = {"name": "aiohttp", "version": "3.14.5", "vulns": []}
VULN_DEP = {
    "name": "aiohttp",
    "version": "3.14.5",
    "vulns": [{"id": "PYSEC-0000-1", "fix_versions": ["3.14.6"], "aliases": []}],
}
NOT_FOUND = {
    "name": "aiohttp",
    "skip_reason": "Dependency not found on PyPI and could not be audited: aiohttp (3.14.5)",
}
CONNECTION_TRACEBACK = (
    "Traceback (most recent call last):\n"
    "requests.exceptions.ConnectionError: HTTPSConnectionPool(host='advisories.invalid', "
    "port=443): Max retries exceeded with url: /v1/query (Caused by NameResolutionError)\n"
)


@pytest.mark.parametrize(
    ("returncode", "output", "report", "status", "starts"),
    [
        (0, "No known vulnerabilities found", _report(CLEAN_DEP), 0, "pip-audit: no known"),
        (1, "Found 1 known vulnerability", _report(VULN_DEP, CLEAN_DEP), 1, "pip-audit: 1 known"),
        (1, CONNECTION_TRACEBACK, None, 0, audit.UNREACHABLE_LINE),
        (1, "ERROR: Tip: your network may be blocking this service.", None, 0, "pip-audit: adv"),
        (None, "", None, 0, audit.UNREACHABLE_LINE),
        (0, "No known vulnerabilities found, 1 skipped", _report(NOT_FOUND), 0, "pip-audit: adv"),
        (0, "", _report(NOT_FOUND, CLEAN_DEP), 0, "pip-audit: no known vulnerabilities in 1"),
        (1, "ERROR: invalid requirements input: nope", None, 2, "pip-audit: failed"),
        (0, "", None, 2, "pip-audit: failed"),
        (0, "", _report(), 2, "pip-audit: failed"),
        (1, "", _report(CLEAN_DEP), 2, "pip-audit: failed"),
        (0, "", {"unexpected": True}, 2, "pip-audit: failed"),
    ],
    ids=[
        "clean",
        "finding-fails",
        "connection-error-skips",
        "blocked-network-skips",
        "timeout-skips",
        "no-data-for-any-package-skips",
        "partly-audited-passes-and-says-so",
        "bad-input-fails",
        "no-report-fails",
        "empty-lock-fails",
        "nonzero-without-finding-fails",
        "malformed-report-fails",
    ],
)
def test_classify_tells_findings_from_an_unreachable_service(
    returncode, output, report, status, starts
):
    outcome = audit.classify(returncode, output, report, timeout=120)
    assert outcome.status == status, outcome
    assert outcome.line.startswith(starts), outcome.line
    assert "\n" not in outcome.line, "one line for CI's log"


def test_a_finding_names_the_package_version_advisory_and_fix():
    outcome = audit.classify(1, "", _report(VULN_DEP), timeout=120)
    assert "aiohttp 3.14.5 PYSEC-0000-1 (fix: 3.14.6)" in outcome.line


# ------------------------------------------------------------------------------------------
# The audit wrapper end to end, through a stub pip-audit
# ------------------------------------------------------------------------------------------

STUB = """\
import json, pathlib, sys, time
plan = json.loads(pathlib.Path(__file__).with_name("plan.json").read_text())
pathlib.Path(__file__).with_name("argv.json").write_text(json.dumps(sys.argv[1:]))
time.sleep(plan.get("sleep", 0))
if plan.get("report") is not None:
    out = sys.argv[sys.argv.index("--output") + 1]
    pathlib.Path(out).write_text(json.dumps(plan["report"]))
sys.stderr.write(plan.get("stderr", ""))
sys.exit(plan.get("exit", 0))
"""


@pytest.fixture
def stub(tmp_path: Path):
    """A pip-audit executable whose outcome each test writes to plan.json."""
    path = tmp_path / "bin" / "pip-audit"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\n{STUB}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)

    def run(plan: dict[str, object], *args: str) -> subprocess.CompletedProcess[str]:
        (path.parent / "plan.json").write_text(json.dumps(plan))
        return subprocess.run(
            [sys.executable, str(AUDIT), "--lock", str(LOCK), "--pip-audit", str(path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    run.argv = lambda: json.loads((path.parent / "argv.json").read_text())
    return run


def test_wrapper_audits_the_lock_with_hashes_required(stub):
    result = stub({"report": _report(CLEAN_DEP)}, "--", "--cache-dir", "/nonexistent")
    assert result.returncode == 0, result
    argv = stub.argv()
    assert argv[argv.index("--requirement") + 1] == str(LOCK)
    assert "--require-hashes" in argv and argv[-2:] == ["--cache-dir", "/nonexistent"]
    assert argv[argv.index("--format") + 1] == "json"
    assert result.stdout == "pip-audit: no known vulnerabilities in 1 locked packages\n"


def test_wrapper_fails_ci_on_a_finding(stub):
    result = stub({"report": _report(VULN_DEP), "exit": 1, "stderr": "Found 1 known"})
    assert result.returncode == 1
    assert "PYSEC-0000-1" in result.stdout and len(result.stdout.splitlines()) == 1


def test_wrapper_skips_with_one_line_when_the_service_is_unreachable(stub):
    result = stub({"exit": 1, "stderr": CONNECTION_TRACEBACK})
    assert result.returncode == 0
    assert result.stdout == audit.UNREACHABLE_LINE + "\n"


def test_wrapper_skips_when_pip_audit_outlives_its_timeout(stub):
    result = stub({"sleep": 30, "report": _report(CLEAN_DEP)}, "--timeout", "1")
    assert result.returncode == 0
    assert result.stdout.startswith(audit.UNREACHABLE_LINE), result.stdout


def test_wrapper_fails_when_pip_audit_fails_for_another_reason(stub):
    result = stub({"exit": 1, "stderr": "ERROR: requirement aiohttp does not have a hash"})
    assert result.returncode == 2
    assert "does not have a hash" in result.stdout


def test_wrapper_fails_without_a_lock(tmp_path: Path):
    missing = subprocess.run(
        [sys.executable, str(AUDIT), "--lock", str(tmp_path / "none.lock")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "no lock file" in missing.stdout


# ------------------------------------------------------------------------------------------
# The audit wrapper end to end, through the real pip-audit and a local advisory server
# ------------------------------------------------------------------------------------------


class _Advisories(BaseHTTPRequestHandler):
    answer: ClassVar[dict[str, object]] = {}

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps(self.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def advisory_server() -> Iterator[tuple[str, type[_Advisories]]]:
    handler = type("Handler", (_Advisories,), {"answer": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/query", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def real_audit(tmp_path: Path):
    pytest.importorskip("pip_audit", reason="pip-audit is in the dev extra")
    lock = tmp_path / "one.lock"
    lock.write_text("aiohttp==3.14.5 \\\n    --hash=sha256:" + "0" * 64 + "\n")

    def run(osv_url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                str(AUDIT),
                "--lock",
                str(lock),
                "--timeout",
                "60",
                "--",
                "--vulnerability-service",
                "osv",
                "--osv-url",
                osv_url,
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

    return run


def test_real_pip_audit_finding_fails(real_audit, advisory_server):
    url, handler = advisory_server
    handler.answer = {
        "vulns": [
            {
                "id": "GHSA-test-0000-0000",
                "summary": "test advisory",
                "affected": [
                    {
                        "package": {"name": "aiohttp", "ecosystem": "PyPI"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": "3.14.6"}],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    result = real_audit(url)
    assert result.returncode == 1, result
    assert "aiohttp 3.14.5 GHSA-test-0000-0000 (fix: 3.14.6)" in result.stdout


def test_real_pip_audit_clean_passes(real_audit, advisory_server):
    url, _ = advisory_server
    result = real_audit(url)
    assert result.returncode == 0, result
    assert result.stdout == "pip-audit: no known vulnerabilities in 1 locked packages\n"


def test_real_pip_audit_unreachable_service_skips(real_audit):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there any more: connection refused, as from a firewalled network.
    result = real_audit(f"http://127.0.0.1:{port}/v1/query")
    assert result.returncode == 0, result
    assert result.stdout == audit.UNREACHABLE_LINE + "\n"
