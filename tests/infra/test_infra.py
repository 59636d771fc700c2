"""Static checks of the container and Azure deployment files.

Docker, the Bicep compiler and Azure are not available where these run, so the files are
checked against the project instead: the Dockerfile's stages, user, health check, command and
copied paths; compose's Redis wiring; the Azure Developer CLI project's paths; that every
environment variable the container app sets is a setting named in SPEC.md section 6; and a
light Bicep syntax pass (balanced brackets and strings, module paths and parameters, outputs,
stable API versions). Each test reads a few small files (one runs the health check's Python
against a local server), so the whole module runs in about two seconds.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from dataclasses import dataclass
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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

# azure-identity's own variable, named by SPEC.md section 4 (not the section 6 table): it picks
# the user-assigned managed identity DefaultAzureCredential signs in as.
IDENTITY_SETTINGS = frozenset({"AZURE_CLIENT_ID"})

# What the Azure container app must set (issue 6, point 5).
REQUIRED_APP_SETTINGS = {
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_DEPLOYMENT",
    "AZURE_OPENAI_MODEL",
    "AZURE_CLIENT_ID",
    "REDIS_URL",
    "MICROSOFT_APP_ID",
    "MICROSOFT_APP_TYPE",
    "MICROSOFT_APP_TENANT_ID",
    "LOG_FORMAT",
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
}
SECRET_APP_SETTINGS = {"REDIS_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}

REQUIRED_OUTPUTS = {
    "AZURE_LOCATION",
    "AZURE_TENANT_ID",
    "AZURE_RESOURCE_GROUP",
    "AZURE_CONTAINER_REGISTRY_ENDPOINT",
    f"SERVICE_{SERVICE.upper()}_NAME",
    f"SERVICE_{SERVICE.upper()}_URI",
    "SLACK_EVENTS_URL",
    "TEAMS_MESSAGING_ENDPOINT",
    "MICROSOFT_APP_ID",
    "AZURE_OPENAI_ENDPOINT",
}

ROLE_IDS = {
    "AcrPull": "7f951dda-4ed3-4680-a7ca-43fe172d538d",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Cognitive Services OpenAI User": "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd",
}


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


def test_spec_settings_table_names_exactly_the_settings_class():
    from pydantic import AliasChoices

    from bot.settings import Settings

    names: set[str] = set()
    for info in Settings.model_fields.values():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(c) for c in alias.choices)
    assert spec_settings() == frozenset(names) - IDENTITY_SETTINGS
    for name in IDENTITY_SETTINGS:
        assert f"`{name}`" in SPEC.read_text(), f"docs/spec.md no longer names {name}"


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


def test_dockerfile_is_multi_stage_on_slim_python():
    all_stages = stages()
    assert len(all_stages) >= 2, "builder and runtime stages expected"
    images = [s[0].args.split()[0] for s in all_stages]
    assert images[-1] == "python:3.11-slim"
    assert all(image.startswith("python:3.11") for image in images), images
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    assert requires == ">=3.11", "the base image's Python must satisfy requires-python"
    names = [stage_name(s) for s in all_stages]
    assert len(set(names)) == len(names), f"duplicate stage names: {names}"
    for index, stage in enumerate(all_stages):
        for ins in only(stage, "COPY"):
            flags, _, _ = parse_copy(ins.args)
            if "from" in flags:
                assert flags["from"] in names[:index], (
                    f"line {ins.line}: COPY --from={flags['from']} names no earlier stage"
                )
    # The runtime stage copies the built environment, not the sources.
    runtime_copies = [parse_copy(i.args) for i in only(final_stage(), "COPY")]
    assert runtime_copies and all("from" in flags for flags, _, _ in runtime_copies)


def test_final_stage_runs_as_a_non_root_user_it_creates():
    users = only(final_stage(), "USER")
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].args.split(":")[0]
    assert user not in {"root", "0"}
    created = " ".join(i.args for i in only(final_stage(), "RUN"))
    if user.isdigit():
        assert re.search(rf"useradd\b.*--uid {user}\b", created), f"uid {user} is never created"
    else:
        assert re.search(rf"useradd\b.*\b{user}\b", created), f"user {user} is never created"
    # USER comes before CMD, so the service itself (not just later RUNs) is unprivileged.
    keywords = [i.keyword for i in final_stage()]
    assert keywords.index("USER") < keywords.index("CMD")


def test_healthcheck_probes_healthz_on_port_with_python():
    command = healthcheck_command()
    assert command[:2] == ["python", "-c"], "slim images have no curl: probe with Python"
    code = command[2]
    compile(code, "<healthcheck>", "exec")
    assert "/healthz" in code and "urllib" in code and "PORT" in code
    assert str(PORT) in code, "the probe must default to the service's default port"


def test_cmd_is_threadwise_serve_in_exec_form_and_port_is_exposed():
    cmds = only(final_stage(), "CMD")
    assert cmds, "no CMD"
    # Exec form: threadwise is PID 1 and gets SIGTERM itself (a shell would swallow it).
    assert exec_form(cmds[-1].args) == [SERVICE, "serve"]
    assert not only(final_stage(), "ENTRYPOINT")
    exposed = {p for i in only(final_stage(), "EXPOSE") for p in i.args.split()}
    assert f"{PORT}" in exposed or f"{PORT}/tcp" in exposed
    env = " ".join(i.args for i in only(final_stage(), "ENV"))
    port = re.search(r"\bPORT=(\d+)", env)
    assert port is None or int(port.group(1)) == PORT


def test_console_script_is_declared_and_packaged():
    project = tomllib.loads(PYPROJECT.read_text())
    target = project["project"]["scripts"].get(SERVICE)
    assert target, f"[project.scripts] declares no '{SERVICE}' console script"
    module, _, attribute = target.partition(":")
    assert module and attribute, f"'{target}' is not module:function"
    package = module.split(".")[0]
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert any(re.fullmatch(p.replace("*", ".*"), package) for p in include)
    copied = {src for i in only(stages()[0], "COPY") for src in parse_copy(i.args)[1]}
    assert package in copied, f"the builder never copies the '{package}' package"


def test_console_script_module_defines_its_function():
    target = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"][SERVICE]
    module, _, attribute = target.partition(":")
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert path.is_file(), f"{path.relative_to(ROOT)} does not exist"
    source = path.read_text()
    assert re.search(rf"^(async )?def {attribute}\(|^{attribute} = ", source, re.M), (
        f"{module} defines no {attribute}"
    )


def test_tokenizer_files_are_package_data_and_reach_the_image():
    project = tomllib.loads(PYPROJECT.read_text())
    package_data = project["tool"]["setuptools"]["package-data"]["bot"]
    data_dir = ROOT / "bot" / "tokenizer_data"
    files = sorted(p for p in data_dir.iterdir() if p.is_file())
    names = {p.name for p in files}
    # tiktoken's cache names (sha1 of the download URL): o200k_base and cl100k_base.
    assert {
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    } <= names
    ignore = dockerignore()
    for path in files:
        assert re.fullmatch(r"[0-9a-f]{40}", path.name), path.name
        relative = path.relative_to(ROOT / "bot").as_posix()
        assert any(_glob(p).fullmatch(relative) for p in package_data), (
            f"{relative} is not matched by [tool.setuptools.package-data] bot"
        )
        assert not ignore.ignored(path.relative_to(ROOT).as_posix())


def test_dockerfile_leaves_tiktoken_on_the_packaged_files():
    for ins in dockerfile():
        assert "TIKTOKEN_CACHE_DIR" not in ins.args and "DATA_GYM_CACHE_DIR" not in ins.args, (
            f"line {ins.line}: the service points tiktoken at its packaged files itself"
        )


def test_every_copy_source_exists_and_is_in_the_build_context():
    ignore = dockerignore()
    copies = 0
    for ins in dockerfile():
        if ins.keyword not in {"COPY", "ADD"}:
            continue
        flags, sources, _ = parse_copy(ins.args)
        if "from" in flags:
            continue
        for source in sources:
            copies += 1
            path = ROOT / source
            assert path.exists(), f"line {ins.line}: {source} does not exist"
            if path.is_dir():
                shipped = [
                    p
                    for p in path.rglob("*")
                    if p.is_file() and not ignore.ignored(p.relative_to(ROOT).as_posix())
                ]
                assert shipped, f"line {ins.line}: .dockerignore drops all of {source}"
                assert any(p.suffix == ".py" for p in shipped) or source != "bot"
            else:
                assert not ignore.ignored(source), f".dockerignore drops {source}"
    assert copies >= 3


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


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_context():
    ignore = dockerignore()
    for path in (
        ".env",
        "infra/docker/.env",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/infra/test_infra.py",
        "bench/results/run.json",
        "bot/__pycache__/store.cpython-311.pyc",
        "node_modules/x/index.js",
    ):
        assert ignore.ignored(path), f"{path} would be sent to the Docker build"
    for path in ("pyproject.toml", "bot/store/lua/load.lua", "adapters/__init__.py"):
        assert not ignore.ignored(path), f"{path} is needed by the build"


# ------------------------------------------------------------------------------------------
# The health check, run for real against a local server
# ------------------------------------------------------------------------------------------


class _Server:
    def __init__(self, status: int):
        paths: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                code = status if self.path == "/healthz" else 404
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.paths = paths
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _run_healthcheck(port: int) -> int:
    code = healthcheck_command()[2]
    env = {k: v for k, v in os.environ.items() if k != "PORT"} | {"PORT": str(port)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, timeout=20
    ).returncode


def test_healthcheck_passes_on_200_and_fails_on_503_or_no_server():
    with _Server(200) as ok:
        assert _run_healthcheck(ok.port) == 0
        assert ok.paths == ["/healthz"]
    with _Server(503) as failing:
        assert _run_healthcheck(failing.port) != 0
    assert _run_healthcheck(failing.port) != 0  # closed: connection refused


# ------------------------------------------------------------------------------------------
# compose.yaml and .env.example
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def yaml():
    try:
        import yaml as pyyaml
    except ImportError:  # pragma: no cover - the message is the point
        pytest.fail("PyYAML is needed: add pyyaml to [project.optional-dependencies] dev")
    return pyyaml


@pytest.fixture(scope="module")
def compose(yaml):
    return yaml.safe_load(COMPOSE.read_text())


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_runs_redis_7_with_a_ping_healthcheck(compose):
    redis = compose["services"]["redis"]
    assert redis["image"].split(":")[0] == "redis" and redis["image"].split(":")[1][0] == "7"
    test = redis["healthcheck"]["test"]
    assert "redis-cli" in test and "ping" in test
    assert not redis.get("volumes"), "no persistence wanted for local runs"


def test_compose_builds_the_bot_from_the_dockerfile_and_wires_redis(compose):
    bot = compose["services"]["bot"]
    context = (COMPOSE.parent / bot["build"]["context"]).resolve()
    assert context == ROOT, "build context must be the repository root"
    assert (context / bot["build"]["dockerfile"]).resolve() == DOCKERFILE
    env_file = bot["env_file"]
    entries = env_file if isinstance(env_file, list) else [env_file]
    paths = [e["path"] if isinstance(e, dict) else e for e in entries]
    assert paths == [".env"], "env_file is .env beside compose.yaml (documented there)"
    env = _environment(bot)
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert "redis" in compose["services"]
    assert env.get("PORT", str(PORT)) == str(PORT)
    assert f"{PORT}:{PORT}" in [str(p) for p in bot["ports"]]
    assert bot["depends_on"]["redis"]["condition"] == "service_healthy"
    assert set(env) <= allowed_settings(), "compose sets a name that is not a setting"


def test_env_example_lists_every_setting_commented():
    text = ENV_EXAMPLE.read_text()
    listed = set(re.findall(r"^# ?([A-Z][A-Z0-9_]*)=", text, re.M))
    assert spec_settings() | IDENTITY_SETTINGS <= listed, "settings missing from .env.example"
    assert listed <= allowed_settings(), f"not settings: {listed - allowed_settings()}"
    live = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert not live, f"uncommented lines: {live}"


# ------------------------------------------------------------------------------------------
# azure.yaml
# ------------------------------------------------------------------------------------------


def test_azure_yaml_points_at_files_that_exist(yaml):
    project = yaml.safe_load(AZURE_YAML.read_text())
    assert set(project["services"]) == {SERVICE}
    service = project["services"][SERVICE]
    assert service["host"] == "containerapp"
    base = (ROOT / service.get("project", ".")).resolve()
    assert base.is_dir()
    docker = service["docker"]
    assert (base / docker["path"]).resolve() == DOCKERFILE
    assert (base / docker.get("context", ".")).resolve() == ROOT
    infra = project["infra"]
    assert infra.get("provider", "bicep") == "bicep"
    infra_dir = (ROOT / infra["path"]).resolve()
    assert infra_dir == AZURE_DIR
    module = infra.get("module", "main")
    assert (infra_dir / f"{module}.bicep").is_file()
    assert (infra_dir / f"{module}.parameters.json").is_file()


# ------------------------------------------------------------------------------------------
# Bicep: a light syntax pass
# ------------------------------------------------------------------------------------------

_PAIRS = {"(": ")", "[": "]", "{": "}"}


@dataclass(frozen=True)
class Bicep:
    path: Path
    code: str  # comments blanked out (same length and line numbers as the file)
    pairs: dict[int, int]  # index of each bracket opened in code -> index of its closer

    def line(self, index: int) -> int:
        return self.code.count("\n", 0, index) + 1


def scan_bicep(text: str) -> tuple[str, dict[int, int]]:
    """Check strings, comments and brackets (including `${...}` in strings) balance."""
    code = list(text)
    pairs: dict[int, int] = {}
    stack: list[tuple[str, int]] = []
    modes = ["code"]

    def where(index: int) -> str:
        return f"line {text.count(chr(10), 0, index) + 1}"

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if modes[-1] == "code":
            if text.startswith("'''", i):
                end = text.find("'''", i + 3)
                if end < 0:
                    raise ValueError(f"unterminated ''' string at {where(i)}")
                i = end + 3
            elif text.startswith("//", i):
                end = text.find("\n", i)
                end = n if end < 0 else end
                code[i:end] = " " * (end - i)
                i = end
            elif text.startswith("/*", i):
                end = text.find("*/", i + 2)
                if end < 0:
                    raise ValueError(f"unterminated /* comment at {where(i)}")
                code[i : end + 2] = [ch if ch == "\n" else " " for ch in text[i : end + 2]]
                i = end + 2
            elif c == "'":
                modes.append("string")
                i += 1
            else:
                if c in _PAIRS:
                    stack.append((c, i))
                elif c in ")]}":
                    if not stack:
                        raise ValueError(f"unmatched {c!r} at {where(i)}")
                    opener, start = stack.pop()
                    if opener == "${":
                        if c != "}":
                            raise ValueError(f"interpolation closed by {c!r} at {where(i)}")
                        modes.pop()
                    elif _PAIRS[opener] != c:
                        raise ValueError(
                            f"{opener!r} at {where(start)} closed by {c!r} at {where(i)}"
                        )
                    else:
                        pairs[start] = i
                i += 1
        elif c == "\\":
            i += 2
        elif c == "'":
            modes.pop()
            i += 1
        elif c == "\n":
            raise ValueError(f"string not closed on its line at {where(i)}")
        elif text.startswith("${", i):
            stack.append(("${", i))
            modes.append("code")
            i += 2
        else:
            i += 1
    if stack:
        raise ValueError(f"{stack[-1][0]!r} at {where(stack[-1][1])} is never closed")
    if modes != ["code"]:
        raise ValueError("a string is never closed")
    return "".join(code), pairs


@cache
def bicep(path: Path) -> Bicep:
    code, pairs = scan_bicep(path.read_text())
    return Bicep(path, code, pairs)


_PARAM = re.compile(r"^param\s+(\w+)\s+(\w+)(\s*=\s*\S.*)?$", re.M)
_OUTPUT = re.compile(r"^output\s+(\w+)\s+(\w+)\s*=", re.M)
_MODULE = re.compile(r"^module\s+(\w+)\s+'([^']+)'\s*=\s*(?:if\s*\([^\n]*\)\s*)?\{", re.M)
_RESOURCE = re.compile(r"^resource\s+(\w+)\s+'([\w.]+/[\w./]+)@([\w-]+)'", re.M)


def params(b: Bicep) -> dict[str, bool]:
    """Declared parameters -> whether each has a default."""
    return {m.group(1): bool(m.group(3)) for m in _PARAM.finditer(b.code)}


def outputs(b: Bicep) -> set[str]:
    return {m.group(1) for m in _OUTPUT.finditer(b.code)}


def top_level_keys(b: Bicep, open_index: int) -> set[str]:
    """Keys of the object literal opened at open_index, nested blocks left out."""
    close = b.pairs[open_index]
    flat, i = [], open_index + 1
    while i < close:
        if i in b.pairs:
            i = b.pairs[i] + 1
            continue
        flat.append(b.code[i])
        i += 1
    return set(re.findall(r"^\s*(\w+)\s*:", "".join(flat), re.M))


def modules(b: Bicep) -> dict[str, tuple[Path, set[str]]]:
    """module symbol -> (file, parameter names passed)."""
    found = {}
    for m in _MODULE.finditer(b.code):
        symbol, relative = m.group(1), m.group(2)
        body_open = m.end() - 1
        body = b.code[body_open : b.pairs[body_open] + 1]
        given = re.search(r"^\s*params:\s*\{", body, re.M)
        passed = top_level_keys(b, body_open + given.end() - 1) if given else set()
        found[symbol] = ((b.path.parent / relative).resolve(), passed)
    return found


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(AZURE_DIR).as_posix())
def test_bicep_file_is_balanced(path):
    try:
        bicep(path)
    except ValueError as error:
        pytest.fail(f"{path.name}: {error}")


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(AZURE_DIR).as_posix())
def test_bicep_modules_exist_and_get_their_parameters(path):
    b = bicep(path)
    mods = modules(b)
    for symbol, (module_path, passed) in mods.items():
        assert module_path.is_file(), f"module {symbol}: {module_path} does not exist"
        declared = params(bicep(module_path))
        unknown = passed - set(declared)
        assert not unknown, f"module {symbol} passes undeclared {sorted(unknown)}"
        missing = {name for name, has_default in declared.items() if not has_default} - passed
        assert not missing, f"module {symbol} misses required {sorted(missing)}"
    for symbol, output in re.findall(r"\b(\w+)\.outputs\.(\w+)", b.code):
        assert symbol in mods, f"{symbol}.outputs used but {symbol} is not a module"
        assert output in outputs(bicep(mods[symbol][0])), f"{symbol} has no output {output}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(AZURE_DIR).as_posix())
def test_every_bicep_param_is_used(path):
    b = bicep(path)
    # Decorators (descriptions) do not count as a use.
    body = re.sub(r"^\s*@.*$", "", b.code, flags=re.M)
    body = _PARAM.sub("", body)
    unused = [name for name in params(b) if not re.search(rf"\b{name}\b", body)]
    assert not unused, f"{path.name}: unused parameters {unused}"


def test_bicep_uses_stable_api_versions():
    seen: dict[str, set[str]] = {}
    for path in BICEP_FILES:
        for _, kind, version in _RESOURCE.findall(bicep(path).code):
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", version), f"{path.name}: {kind}@{version}"
            seen.setdefault(kind.lower(), set()).add(version)
    inconsistent = {kind: v for kind, v in seen.items() if len(v) > 1}
    assert not inconsistent, f"one API version per resource type: {inconsistent}"
    for kind in (
        "microsoft.app/containerapps",
        "microsoft.app/managedenvironments",
        "microsoft.cache/redisenterprise",
        "microsoft.cache/redisenterprise/databases",
        "microsoft.cognitiveservices/accounts",
        "microsoft.cognitiveservices/accounts/deployments",
        "microsoft.keyvault/vaults",
        "microsoft.containerregistry/registries",
        "microsoft.managedidentity/userassignedidentities",
        "microsoft.operationalinsights/workspaces",
        "microsoft.insights/components",
        "microsoft.botservice/botservices",
        "microsoft.botservice/botservices/channels",
        "microsoft.authorization/roleassignments",
    ):
        assert kind in seen, f"no {kind} resource"


# ------------------------------------------------------------------------------------------
# Bicep: what the templates must do
# ------------------------------------------------------------------------------------------


def app_settings() -> dict[str, tuple[str, str]]:
    """Environment variables of the container app: name -> (value|secretRef, expression)."""
    code = bicep(CONTAINER_APP_BICEP).code
    found = re.findall(r"name:\s*'([A-Z][A-Z0-9_]*)'\s*\n\s*(value|secretRef):\s*([^\n]+)", code)
    names = re.findall(r"name:\s*'([A-Z][A-Z0-9_]*)'", code)
    assert len(found) == len(names), "an environment variable escapes this test's pattern"
    # REDIS_URL is set one of two ways (keyless: a plain value; password: from Key Vault); the
    # Key Vault one is kept here, `test_keyless_redis_*` checks the other.
    settings = {name: (kind, expr.strip()) for name, kind, expr in found if name != "REDIS_URL"}
    settings["REDIS_URL"] = next(
        (k, e.strip()) for n, k, e in found if n == "REDIS_URL" and k == "secretRef"
    )
    assert len(settings) == len(found) - 1, "an environment variable is set twice"
    return settings


def test_container_app_sets_only_spec_settings():
    settings = app_settings()
    unknown = set(settings) - allowed_settings()
    assert not unknown, f"not settings in SPEC.md section 6: {sorted(unknown)}"
    assert REQUIRED_APP_SETTINGS <= set(settings), sorted(REQUIRED_APP_SETTINGS - set(settings))
    for name in SECRET_APP_SETTINGS:
        assert settings[name][0] == "secretRef", f"{name} must come from Key Vault"
    assert settings["MICROSOFT_APP_TYPE"] == ("value", "'UserAssignedMSI'")
    assert settings["LOG_FORMAT"] == ("value", "'json'")
    assert settings["AZURE_CLIENT_ID"] == settings["MICROSOFT_APP_ID"], "both are the UAMI"
    assert "AZURE_OPENAI_API_KEY" not in settings and "OPENAI_API_KEY" not in settings
    code = bicep(CONTAINER_APP_BICEP).code
    for secret in {expr.strip("'") for kind, expr in settings.values() if kind == "secretRef"}:
        assert re.search(rf"name:\s*'{secret}'\s*\n\s*keyVaultUrl:", code), (
            f"secret {secret} is not a Key Vault reference"
        )


def test_container_app_ingress_probes_and_scaling():
    code = bicep(CONTAINER_APP_BICEP).code
    declared = {m.group(1): m.group(3) for m in _PARAM.finditer(code)}
    assert declared["targetPort"].strip(" =") == str(PORT)
    assert re.search(r"external:\s*true", code) and re.search(r"targetPort:\s*targetPort", code)
    probes = re.findall(r"type:\s*'(\w+)'\s*\n\s*httpGet:\s*\{\s*\n\s*path:\s*'([^']+)'", code)
    assert dict(probes) == {"Startup": "/healthz", "Liveness": "/healthz", "Readiness": "/readyz"}
    for value in re.findall(r"failureThreshold:\s*(\d+)", code):
        assert 1 <= int(value) <= 10, "Container Apps allows failureThreshold 1-10"
    assert re.search(r"@minValue\(1\)\s*\n(?:@.*\n)*param minReplicas int", code)
    assert re.search(r"http:\s*\{\s*\n\s*metadata:\s*\{\s*\n\s*concurrentRequests:", code)
    main = bicep(MAIN_BICEP).code
    assert re.search(rf"var targetPort = {PORT}\b", main)
    assert re.search(r"@minValue\(1\)\s*\n(?:@.*\n)*param minReplicas int = 1\b", main)


def test_main_declares_the_outputs_azd_and_the_manifests_need():
    b = bicep(MAIN_BICEP)
    assert REQUIRED_OUTPUTS <= outputs(b), sorted(REQUIRED_OUTPUTS - outputs(b))
    assert re.search(r"^output SLACK_EVENTS_URL string = '[^\n]*/slack/events'$", b.code, re.M)
    assert re.search(
        r"^output TEAMS_MESSAGING_ENDPOINT string = '[^\n]*/api/messages'$", b.code, re.M
    )
    assert re.search(r"messagingEndpoint: '[^\n]*/api/messages'", b.code)
    assert re.search(r"^targetScope = 'subscription'$", b.code, re.M)


def test_container_app_carries_the_azd_service_tag():
    main = bicep(MAIN_BICEP).code
    assert re.search(rf"var serviceName = '{SERVICE}'", main)
    assert re.search(r"'azd-service-name': serviceName", main)
    assert "'azd-env-name': environmentName" in main


def test_parameters_file_matches_main_bicep():
    declared = params(bicep(MAIN_BICEP))
    values = json.loads(PARAMETERS.read_text())["parameters"]
    assert set(values) <= set(declared), sorted(set(values) - set(declared))
    required = {name for name, has_default in declared.items() if not has_default}
    assert required <= set(values), sorted(required - set(values))
    for name, entry in values.items():
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", entry["value"]), name
    assert values["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert values["location"]["value"] == "${AZURE_LOCATION}"
    exists = f"${{SERVICE_{SERVICE.upper()}_RESOURCE_EXISTS=false}}"
    assert values[f"{SERVICE}Exists"]["value"] == exists


def test_azure_resources_keep_their_identity_and_security_settings():
    def code(name: str) -> str:
        return bicep(AZURE_DIR / "modules" / name).code

    assert ROLE_IDS["AcrPull"] in code("registry.bicep")
    assert re.search(r"adminUserEnabled:\s*false", code("registry.bicep"))
    keyvault = code("keyvault.bicep")
    assert ROLE_IDS["Key Vault Secrets User"] in keyvault
    assert re.search(r"enableRbacAuthorization:\s*true", keyvault)
    assert "'slack-bot-token'" in keyvault and "'slack-signing-secret'" in keyvault
    openai = code("openai.bicep")
    assert ROLE_IDS["Cognitive Services OpenAI User"] in openai
    assert re.search(r"kind:\s*'OpenAI'", openai)
    assert re.search(r"disableLocalAuth:\s*true", openai)
    assert re.search(r"customSubDomainName:\s*name", openai)
    redis = code("redis.bicep")
    assert re.search(r"clientProtocol:\s*'Encrypted'", redis)
    assert re.search(r"var redisPort = 10000\b", redis) and re.search(r"port:\s*redisPort", redis)
    assert re.search(r"param clusteringPolicy string = 'OSSCluster'", redis)
    assert re.search(r"clusteringPolicy:\s*clusteringPolicy", redis)
    assert re.search(
        r"accessKeysAuthentication:\s*auth == 'entra' \? 'Disabled' : 'Enabled'", redis
    )
    assert "value: 'rediss://:${uriComponent(database.listKeys().primaryKey)}@" in redis
    assert re.search(r"minimumTlsVersion:\s*'1\.2'", redis)
    # Markers and locks carry TTLs: any eviction policy could drop them before they expire.
    assert re.search(r"param evictionPolicy string = 'NoEviction'", redis)
    assert re.search(r"evictionPolicy:\s*evictionPolicy", redis)
    assert "evictionPolicy" not in bicep(MAIN_BICEP).code, "main.bicep must keep the default"
    bot = code("bot.bicep")
    assert re.search(r"kind:\s*'azurebot'", bot)
    assert re.search(r"msaAppType:\s*'UserAssignedMSI'", bot)
    for prop in ("msaAppId", "msaAppMSIResourceId", "msaAppTenantId", "endpoint"):
        assert re.search(rf"{prop}:\s*\w+", bot), prop
    assert re.search(r"name:\s*'MsTeamsChannel'", bot)
    assert re.search(r"channelName:\s*'MsTeamsChannel'", bot)
    assert re.search(r"isEnabled:\s*true", bot)
    app = code("container-app.bicep")
    assert re.search(r"type:\s*'UserAssigned'", app)
    assert re.search(r"server:\s*registryLoginServer\s*\n\s*identity:\s*identityId", app)


# ------------------------------------------------------------------------------------------
# Everything
# ------------------------------------------------------------------------------------------


def test_no_unfinished_markers_in_the_deployment_files():
    files = [DOCKERFILE, COMPOSE, DOCKERIGNORE, ENV_EXAMPLE, AZURE_YAML, PARAMETERS]
    files += sorted(p for p in AZURE_DIR.rglob("*") if p.is_file())
    markers = re.compile(r"\b(TO" + r"DO|FIX" + r"ME|XXX|TBD)\b")
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not markers.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


def test_keyless_redis_is_the_default_with_an_access_policy_and_no_secret():
    """REDIS_AUTH=entra: access keys off, the identity let in, no Redis secret in Key Vault."""
    main = bicep(MAIN_BICEP).code
    assert re.search(r"param redisAuth string = 'entra'", main)
    assert re.search(r"param redisClusteringPolicy string = 'OSSCluster'", main)
    assert "'EnterpriseCluster'" in main, "EnterpriseCluster stays an option"
    assert re.search(r"appPrincipalId:\s*identity\.outputs\.principalId", main)
    redis = bicep(AZURE_DIR / "modules" / "redis.bicep").code
    assignment = re.search(
        r"resource \w+ 'Microsoft\.Cache/redisEnterprise/databases/accessPolicyAssignments@[\d-]+'"
        r" = if \(auth == 'entra'\) \{(.*?)\n\}",
        redis,
        re.S,
    )
    assert assignment, "no access policy assignment for the app's identity"
    assert re.search(r"accessPolicyName:\s*'default'", assignment.group(1))
    assert re.search(r"objectId:\s*appPrincipalId", assignment.group(1))
    # The Key Vault secret (the access key in a URL) exists only with password auth.
    assert re.search(r"resource redisUrlSecret '[^']+' = if \(auth == 'password'\)", redis)
    assert re.search(r"output redisUrl string = auth == 'entra' \? 'rediss://\$\{", redis)
    assert re.search(r"output cluster bool = clusteringPolicy == 'OSSCluster'", redis)
    app = bicep(CONTAINER_APP_BICEP).code
    assert re.search(
        r"redisUrlSettings = empty\(redisUrlSecretUri\) \? \[\s*\{\s*name: 'REDIS_URL'\s*"
        r"value: redisUrl",
        app,
    )
    assert re.search(r"redisSecrets = empty\(redisUrlSecretUri\) \? \[\]", app)
    settings = app_settings()
    assert settings["REDIS_CLUSTER"] == ("value", "redisCluster ? 'true' : 'false'")
    assert settings["REDIS_AUTH"] == ("value", "redisAuth")
