"""The deployment's configuration: the spec's settings table, compose, .env.example, azure.yaml.

Every environment variable they set is a setting of docs/spec.md section 6, whose table names
exactly the `Settings` class; the paths they name exist; and no deployment file is unfinished.
"""

from __future__ import annotations

import re

import pytest

from tests.support.deploy import (
    AZURE_DIR,
    AZURE_YAML,
    COMPOSE,
    DOCKERFILE,
    DOCKERIGNORE,
    ENV_EXAMPLE,
    IDENTITY_SETTINGS,
    PARAMETERS,
    PORT,
    ROOT,
    SERVICE,
    SPEC,
    allowed_settings,
    spec_settings,
)

# ------------------------------------------------------------------------------------------
# SPEC.md
# ------------------------------------------------------------------------------------------


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
# Every deployment file
# ------------------------------------------------------------------------------------------


def test_no_unfinished_markers_in_the_deployment_files():
    files = [DOCKERFILE, COMPOSE, DOCKERIGNORE, ENV_EXAMPLE, AZURE_YAML, PARAMETERS]
    files += sorted(p for p in AZURE_DIR.rglob("*") if p.is_file())
    markers = re.compile(r"\b(TO" + r"DO|FIX" + r"ME|XXX|TBD)\b")
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert not markers.search(line), f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
