"""The Dockerfile builds a slim, non-root, health-checked image of the packaged service only.

Docker is not available where these run, so the Dockerfile is checked against the project: its
stages, user, health check, command, copied paths and .dockerignore. The health check's Python
is run for real against a local server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.deploy import (
    PORT,
    PYPROJECT,
    ROOT,
    SERVICE,
    _glob,
    dockerfile,
    dockerignore,
    exec_form,
    final_stage,
    healthcheck_command,
    only,
    parse_copy,
    stage_name,
    stages,
)

# ------------------------------------------------------------------------------------------
# Dockerfile
# ------------------------------------------------------------------------------------------


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


def test_dockerignore_keeps_secrets_and_clutter_out_of_the_context():
    ignore = dockerignore()
    for path in (
        ".env",
        "infra/docker/.env",
        ".venv/bin/python",
        ".git/HEAD",
        "tests/infra/test_docker.py",
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
