"""Audit the hashed lock file with pip-audit, for CI.

    python infra/ci/audit.py [--lock requirements.lock] [--timeout 120] [-- PIP_AUDIT_ARGS...]

pip-audit exits 1 both for a vulnerability it found and for a service it could not reach, and
CI must treat those oppositely: a finding fails the run, an unreachable advisory service (no
network but the package index, a firewall, an outage) is skipped with one line. So pip-audit
writes its JSON report to a file and the outcome is read from that report first and from the
exit code and error text only when there is no report.

Exit status: 0 clean or skipped, 1 known vulnerabilities, 2 pip-audit failed for another reason
(bad lock, missing tool): CI fails on both non-zero codes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

CLEAN, SKIPPED, FINDINGS, FAILED = 0, 0, 1, 2
UNREACHABLE_LINE = "pip-audit: advisory service unreachable, skipped"

# Text pip-audit (or requests under it) prints when the advisory service did not answer. Matched
# as plain substrings: the error output is not trusted to be small or well formed.
_UNREACHABLE_MARKERS = (
    "ConnectionError",
    "Could not connect",
    "NameResolutionError",
    "Failed to resolve",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Max retries exceeded",
    "ConnectTimeout",
    "ReadTimeout",
    "timed out",
    "SSLError",
    "ServiceError",  # pip-audit's wrapper for an HTTP error status (5xx, 429) from the service
    "your network may be blocking",
)
# pip-audit's skip reason when the index has no vulnerability data for a release. An index or
# mirror that serves packages but not the per-release JSON answers this for every package.
_NOT_ON_INDEX = "not found on PyPI"


@dataclass(frozen=True)
class Outcome:
    status: int
    line: str


def classify(
    returncode: int | None, output: str, report: dict[str, object] | None, timeout: float
) -> Outcome:
    """The CI outcome of one pip-audit run.

    `returncode` is None when the run was killed at `timeout`; `report` is the parsed JSON report
    or None when pip-audit wrote none (it writes one only when the audit itself completed).
    """
    if returncode is None:
        return Outcome(SKIPPED, f"{UNREACHABLE_LINE} (no answer within {timeout:g} s)")
    if report is None:
        if returncode != 0 and any(marker in output for marker in _UNREACHABLE_MARKERS):
            return Outcome(SKIPPED, UNREACHABLE_LINE)
        last = next((ln.strip() for ln in reversed(output.splitlines()) if ln.strip()), "")
        return Outcome(FAILED, f"pip-audit: failed (exit {returncode}, no report): {last[:300]}")

    dependencies = report.get("dependencies")
    if not isinstance(dependencies, list):
        return Outcome(FAILED, "pip-audit: failed: the report has no dependency list")
    found: list[str] = []
    skipped: list[dict[str, object]] = []
    audited = 0
    for dep in dependencies:
        if not isinstance(dep, dict):
            return Outcome(FAILED, "pip-audit: failed: malformed dependency in the report")
        if "skip_reason" in dep:
            skipped.append(dep)
            continue
        audited += 1
        for vuln in dep.get("vulns") or []:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            found.append(f"{dep.get('name')} {dep.get('version')} {vuln.get('id')} (fix: {fixes})")
    if found:
        return Outcome(
            FINDINGS,
            f"pip-audit: {len(found)} known vulnerabilities in the lock: " + "; ".join(found),
        )
    if returncode != 0:
        return Outcome(FAILED, f"pip-audit: failed (exit {returncode}) without a finding")
    if not dependencies:
        return Outcome(FAILED, "pip-audit: failed: the lock named no packages to audit")
    if audited == 0 and all(_NOT_ON_INDEX in str(d.get("skip_reason")) for d in skipped):
        return Outcome(
            SKIPPED,
            f"{UNREACHABLE_LINE} (no vulnerability data for any of {len(skipped)} packages)",
        )
    line = f"pip-audit: no known vulnerabilities in {audited} locked packages"
    if skipped:
        names = ", ".join(str(d.get("name")) for d in skipped)
        line += f"; {len(skipped)} could not be audited: {names}"
    return Outcome(CLEAN, line)


def _default_pip_audit() -> str | None:
    """The pip-audit installed beside this interpreter (the CI venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "pip-audit"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("pip-audit")


def run(lock: Path, timeout: float, pip_audit: str, extra: list[str]) -> Outcome:
    with tempfile.TemporaryDirectory(prefix="pip-audit-") as tmp:
        report_path = Path(tmp) / "report.json"
        command = [
            pip_audit,
            "--requirement",
            str(lock),
            "--require-hashes",
            # The lock is complete and pinned: read it as it is, without pip resolving it in a
            # scratch environment (minutes of downloads for no new information).
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--timeout",
            "15",
            "--format",
            "json",
            "--output",
            str(report_path),
            *extra,
        ]
        try:
            proc = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return classify(None, "", None, timeout)
        report: dict[str, object] | None = None
        if report_path.is_file():
            try:
                loaded = json.loads(report_path.read_text())
            except (OSError, ValueError):
                loaded = None
            report = loaded if isinstance(loaded, dict) else None
        return classify(proc.returncode, proc.stdout + proc.stderr, report, timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=Path("requirements.lock"))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for the whole audit")
    parser.add_argument("--pip-audit", dest="pip_audit", default=None, help="pip-audit to run")
    parser.add_argument("extra", nargs="*", help="further pip-audit arguments (after --)")
    args = parser.parse_args(argv)

    if not args.lock.is_file():
        print(f"pip-audit: failed: no lock file at {args.lock}")
        return FAILED
    pip_audit = args.pip_audit or _default_pip_audit()
    if not pip_audit:
        print("pip-audit: failed: pip-audit is not installed (pip install -e '.[dev]')")
        return FAILED
    outcome = run(args.lock, args.timeout, pip_audit, args.extra)
    print(outcome.line)
    return outcome.status


if __name__ == "__main__":
    sys.exit(main())
