"""The hashed locks match pyproject.toml, and the image and CI install from them only.

The lock must not drift from pyproject.toml: every pinned runtime dependency in it, at its pin,
hashed, and nothing else; the build lock holds the build backend. The Docker image installs
third-party code only from the locks with --require-hashes, and CI installs the lock and runs
the audit wrapper on it under a timeout.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.support.deploy import (
    BUILD_LOCK,
    CI_RUN,
    DOCKERFILE,
    LOCK,
    PYPROJECT,
    parse_dockerfile,
    stages,
)

PROJECT = "threadwise"

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
