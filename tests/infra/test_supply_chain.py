"""Supply chain: the hashed locks, the image that installs from them, and CI's pip-audit step.

The lock must not drift from pyproject.toml (every pinned runtime dependency in it, at its pin,
hashed, and nothing else), the Docker image must install only from it, and CI's audit wrapper
must tell a vulnerability finding (fail) from an advisory service it cannot reach (one skipped
line). The wrapper is driven through a stub pip-audit for every outcome and through the real
pip-audit against a local OSV-style server for the ones that depend on its output format.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import re
import socket
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.deploy import DOCKERFILE, parse_dockerfile, stages

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
CI_RUN = ROOT / ".ci" / "run"
AUDIT = ROOT / "infra" / "ci" / "audit.py"
PROJECT = "threadwise"


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
# The lock files
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    marker: str
    hashes: tuple[str, ...]
    via: tuple[str, ...]


def parse_lock(path: Path) -> dict[str, Locked]:
    """Entries of a `uv pip compile --generate-hashes` file, keyed by canonical name."""
    entries: dict[str, Locked] = {}
    for block in re.split(r"\n(?=\S)", path.read_text()):
        if block.startswith("#") or not block.strip():
            continue
        head, _, rest = block.partition("\n")
        requirement, _, marker = head.rstrip("\\ ").partition(";")
        name, sep, version = requirement.strip().partition("==")
        assert sep and version, f"{path.name}: not pinned with ==: {requirement.strip()}"
        via = re.findall(r"^\s+#\s+(?:via\s+)?(\S.*?)\s*$", rest, re.M)
        entries[canonicalize_name(name)] = Locked(
            name=canonicalize_name(name),
            version=version.strip(),
            marker=marker.strip(),
            hashes=tuple(re.findall(r"--hash=sha256:([0-9a-f]{64})\b", rest)),
            via=tuple(v for v in via if v != "via"),
        )
    return entries


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]]


def applies_here(entry: Locked) -> bool:
    return not entry.marker or Requirement(f"x; {entry.marker}").marker.evaluate()


def test_lock_pins_every_runtime_dependency_of_pyproject_with_hashes():
    lock = parse_lock(LOCK)
    for req in runtime_requirements():
        name = canonicalize_name(req.name)
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{req} is not pinned with =="
        assert name in lock, f"{req.name} is in pyproject.toml but not in requirements.lock"
        entry = lock[name]
        assert entry.version == pins[0].version, (
            f"{req.name}: pyproject.toml pins {pins[0].version}, requirements.lock has "
            f"{entry.version}; run infra/ci/lock.sh"
        )
        assert entry.hashes, f"{req.name} has no --hash=sha256: in requirements.lock"
        if req.marker is not None:
            assert Requirement(f"x; {entry.marker}").marker == req.marker, (
                f"{req.name}: marker {entry.marker!r} in the lock, {req.marker} in pyproject.toml"
            )


def test_every_locked_package_is_pinned_hashed_and_needed_by_the_runtime():
    lock = parse_lock(LOCK)
    assert lock, "requirements.lock is empty"
    for entry in lock.values():
        Version(entry.version)
        assert entry.hashes, f"{entry.name} has no hash: pip --require-hashes would refuse it"
        assert len(set(entry.hashes)) == len(entry.hashes), f"{entry.name}: a hash twice"
    # Each entry is there because pyproject.toml's runtime dependencies (not an extra, not a
    # leftover) pull it in: follow uv's "# via" notes back to the project.
    needed = {PROJECT}
    changed = True
    while changed:
        changed = False
        for entry in lock.values():
            if entry.name not in needed and any(
                canonicalize_name(v.split(" ")[0]) in needed for v in entry.via
            ):
                needed.add(entry.name)
                changed = True
    orphans = sorted(set(lock) - needed)
    assert not orphans, f"requirements.lock holds packages nothing at runtime needs: {orphans}"
    header = LOCK.read_text().split("\n", 2)[1]
    assert "extra" not in header, f"the lock was compiled with extras: {header}"


def _closure(roots: list[Requirement]) -> dict[str, str]:
    """Installed distributions the runtime requirements pull in here: name → version."""
    env = default_environment()
    seen: dict[str, set[str]] = {}
    queue = [r for r in roots if r.marker is None or r.marker.evaluate(env)]
    versions: dict[str, str] = {}
    while queue:
        req = queue.pop()
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
            continue
        versions[name] = dist.version
        for raw in dist.requires or []:
            child = Requirement(raw)
            wanted = ["", *sorted(seen[name])]
            if child.marker is None or any(
                child.marker.evaluate({**env, "extra": e}) for e in wanted
            ):
                queue.append(child)
    return versions


def test_lock_is_exactly_the_installed_runtime_closure():
    """The packages pip would need here for pyproject.toml's runtime dependencies, read from
    their installed metadata, are exactly the lock's entries whose markers hold here."""
    lock = parse_lock(LOCK)
    installed = _closure(runtime_requirements())
    drifted = sorted(
        f"{n} {v} (lock {lock[n].version})"
        for n, v in installed.items()
        if n in lock and v != lock[n].version
    )
    if drifted:
        pytest.skip(
            "this environment was not installed from the lock (pip install --require-hashes "
            f"-r requirements.lock): {drifted}"
        )
    expected = {name for name, entry in lock.items() if applies_here(entry)}
    assert set(installed) == expected, (
        f"missing from the lock: {sorted(set(installed) - expected)}; "
        f"in the lock but not needed: {sorted(expected - set(installed))}"
    )


def test_build_lock_pins_the_build_backend_with_hashes():
    lock = parse_lock(BUILD_LOCK)
    requires = tomllib.loads(PYPROJECT.read_text())["build-system"]["requires"]
    names = set()
    for raw in requires:
        req = Requirement(raw)
        name = canonicalize_name(req.name)
        names.add(name)
        assert name in lock, f"{req.name} (build-system.requires) is not in {BUILD_LOCK.name}"
        assert req.specifier.contains(lock[name].version), (
            f"{BUILD_LOCK.name} pins {req.name} {lock[name].version}, outside {req.specifier}"
        )
        assert lock[name].hashes, f"{req.name} has no hash in {BUILD_LOCK.name}"
    assert set(lock) == names, f"{BUILD_LOCK.name} holds more than the build backend"


# ------------------------------------------------------------------------------------------
# The image installs from the locks only
# ------------------------------------------------------------------------------------------


def _pip_commands(args: str) -> list[str]:
    """The pip invocations inside one RUN, split at && and ;."""
    return [c.strip() for c in re.split(r"&&|;", args) if re.search(r"\bpip\b", c)]


def _requirement_files(command: str) -> list[str]:
    return re.findall(r"(?:-r|--requirement)(?:\s+|=)(\S+)", command)


def test_dockerfile_installs_dependencies_from_the_lock_with_require_hashes():
    instructions = parse_dockerfile(DOCKERFILE.read_text())
    builder = stages()[0]
    copied_before: set[str] = set()
    lock_installs = build_installs = 0
    for ins in builder:
        if ins.keyword == "COPY":
            copied_before.update(ins.args.split()[:-1])
        if ins.keyword != "RUN":
            continue
        for command in _pip_commands(ins.args):
            if not re.search(r"\bpip (install|wheel)\b", command):
                continue
            files = _requirement_files(command)
            if "pip wheel" in command:
                # Building the project's wheel: no dependencies, and the locked backend instead
                # of an isolated build environment fetched unpinned.
                assert "--no-deps" in command and "--no-build-isolation" in command, command
            elif files:
                assert "--require-hashes" in command, f"line {ins.line}: {command}"
                assert "--no-deps" in command, f"line {ins.line}: {command}"
                for name in files:
                    assert Path(name).name in {LOCK.name, BUILD_LOCK.name}, command
                    assert any(Path(c).name == Path(name).name for c in copied_before), (
                        f"line {ins.line}: {name} is installed before it is copied"
                    )
                lock_installs += LOCK.name in " ".join(files)
                build_installs += BUILD_LOCK.name in " ".join(files)
            else:
                # Only the project's own wheel is installed without a lock, and without deps.
                assert "--no-deps" in command and ".whl" in command, (
                    f"line {ins.line}: pip installs something outside the lock: {command}"
                )
    assert lock_installs == 1, "the builder never installs requirements.lock"
    assert build_installs == 1, "the builder never installs requirements-build.lock"
    # No other stage runs pip at all: the runtime stage only copies the built environment.
    for stage in stages()[1:]:
        for ins in stage:
            assert ins.keyword != "RUN" or not _pip_commands(ins.args), ins
    assert instructions, "empty Dockerfile"


def test_ci_installs_the_lock_and_audits_it_with_a_timeout():
    text = CI_RUN.read_text()
    commands = [ln.strip() for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    installs = [c for c in commands if "pip install" in c and LOCK.name in c]
    assert installs and all("--require-hashes" in c for c in installs), installs
    audits = [c for c in commands if "infra/ci/audit.py" in c]
    assert len(audits) == 1, "CI does not run the audit wrapper exactly once"
    assert audits[0].startswith("timeout "), "the audit step has no outer timeout"
    assert f"--lock {LOCK.name}" in audits[0] and "--timeout" in audits[0]
    dev = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["dev"]
    pins = [Requirement(r) for r in dev if canonicalize_name(Requirement(r).name) == "pip-audit"]
    assert pins and str(pins[0].specifier).startswith("=="), "pin pip-audit in the dev extra"


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
