"""The deployment files the infra tests read, and parsers for the Dockerfile and .dockerignore.

Also the settings table of docs/spec.md section 6, which every file that sets environment
variables (compose, .env.example, the container app) is checked against.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache

from tests.support.helpers import ROOT

DOCKERFILE = ROOT / "infra" / "docker" / "Dockerfile"
COMPOSE = ROOT / "infra" / "docker" / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
PYPROJECT = ROOT / "pyproject.toml"
AZURE_YAML = ROOT / "azure.yaml"
AZURE_DIR = ROOT / "infra" / "azure"
MAIN_BICEP = AZURE_DIR / "main.bicep"
PARAMETERS = AZURE_DIR / "main.parameters.json"
CONTAINER_APP_BICEP = AZURE_DIR / "modules" / "container-app.bicep"
BICEP_FILES = sorted(AZURE_DIR.rglob("*.bicep"))

SERVICE = "threadwise"
PORT = 3978

SPEC = ROOT / "docs" / "spec.md"  # the contract, kept in the repository

LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "requirements-build.lock"
CI_RUN = ROOT / ".ci" / "run"
AUDIT = ROOT / "infra" / "ci" / "audit.py"

# azure-identity's own variable, named by SPEC.md section 4 (not the section 6 table): it picks
# the user-assigned managed identity DefaultAzureCredential signs in as.
IDENTITY_SETTINGS = frozenset({"AZURE_CLIENT_ID"})

# ------------------------------------------------------------------------------------------
# SPEC.md
# ------------------------------------------------------------------------------------------


def parse_settings_table(text: str) -> frozenset[str]:
    """Every `NAME` in the first column of the spec's section 6 table."""
    section = re.search(r"^## 6\.[^\n]*\n(.*?)(?=^## )", text, re.M | re.S)
    assert section, "docs/spec.md has no '## 6.' section"
    names: set[str] = set()
    for line in section.group(1).splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]*)`", line.split("|")[1]))
    return frozenset(names)


@cache
def spec_settings() -> frozenset[str]:
    return parse_settings_table(SPEC.read_text())


def allowed_settings() -> frozenset[str]:
    return spec_settings() | IDENTITY_SETTINGS


# ------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buf, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue
        if not line:
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buf = ""
    assert not buf, "Dockerfile ends inside a continued line"
    return out


@cache
def dockerfile() -> tuple[Instruction, ...]:
    return tuple(parse_dockerfile(DOCKERFILE.read_text()))


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in dockerfile():
        if ins.keyword == "FROM":
            result.append([])
        assert result, f"line {ins.line}: {ins.keyword} before the first FROM"
        result[-1].append(ins)
    return result


def stage_name(stage: list[Instruction]) -> str | None:
    parts = stage[0].args.split()
    return parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None


def exec_form(args: str) -> list[str]:
    assert args.startswith("["), f"not exec (JSON) form: {args}"
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value)
    return value


def parse_copy(args: str) -> tuple[dict[str, str], list[str], str]:
    tokens = args.split()
    flags: dict[str, str] = {}
    while tokens and tokens[0].startswith("--"):
        key, _, value = tokens.pop(0)[2:].partition("=")
        flags[key] = value
    rest = " ".join(tokens)
    parts = json.loads(rest) if rest.startswith("[") else rest.split()
    assert len(parts) >= 2, f"COPY needs a source and a destination: {args}"
    return flags, parts[:-1], parts[-1]


def final_stage() -> list[Instruction]:
    return stages()[-1]


def only(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in stage if i.keyword == keyword]


def healthcheck_command() -> list[str]:
    checks = only(final_stage(), "HEALTHCHECK")
    assert len(checks) == 1, "the final stage needs exactly one HEALTHCHECK"
    options, sep, command = checks[0].args.partition("CMD ")
    assert sep, "HEALTHCHECK without CMD"
    assert "--interval=" in options and "--timeout=" in options
    return exec_form(command.strip())


# ------------------------------------------------------------------------------------------
# .dockerignore
# ------------------------------------------------------------------------------------------


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


@dataclass(frozen=True)
class DockerIgnore:
    rules: tuple[tuple[bool, re.Pattern[str]], ...]

    def ignored(self, relative: str) -> bool:
        """Docker's rule: the last pattern matching the path or one of its parents wins."""
        parts = relative.strip("/").split("/")
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        result = False
        for negated, pattern in self.rules:
            if any(pattern.fullmatch(c) for c in candidates):
                result = not negated
        return result


@cache
def dockerignore() -> DockerIgnore:
    rules = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        rules.append((negated, _glob(pattern.strip("/"))))
    return DockerIgnore(tuple(rules))
