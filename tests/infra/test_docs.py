"""The docs say what the code does: links resolve, named files and tests exist, lifetimes and key
shapes in docs/data.md follow the code, and the licence matches pyproject.toml."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from adapters.slack.users import NAME_TTL_SECONDS, UserNames
from adapters.teams.adapter import WELCOME_TTL_SECONDS
from bot.settings import Settings
from bot.store.base import AUDIT_KEEP, ONCE_TTL_SECONDS, USAGE_TTL_SECONDS
from bot.store.keys import Keys
from tests.support.helpers import ROOT
from tests.support.readme import command

README = ROOT / "README.md"
DATA = ROOT / "docs" / "data.md"
CONTRIBUTING = ROOT / "docs" / "contributing.md"
DOCS = [
    README,
    DATA,
    CONTRIBUTING,
    ROOT / "docs" / "architecture.md",
    ROOT / "infra/azure/README.md",
]


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def flat(words: str) -> str:
    """Text with line breaks (and a comment's leading `#`) folded into single spaces."""
    return re.sub(r"\s*\n\s*#?\s*", " ", words)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    out = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return out.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text(path), re.MULTILINE)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc):
    for target in re.findall(r"\]\(([^)\s]+)\)", text(doc)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        assert resolved.exists(), f"{doc.name}: {target} does not exist"
        if anchor:
            assert anchor in anchors(resolved), f"{doc.name}: no heading for #{anchor}"


def test_readme_links_contributing_data_and_the_licence():
    readme = text(README)
    for target in ("docs/contributing.md", "docs/data.md", "LICENSE", "#try-it-without-azure"):
        assert f"]({target})" in readme, target
    assert "## Data and privacy" in readme


def test_licence_file_matches_pyproject():
    project = tomllib.loads(text(ROOT / "pyproject.toml"))["project"]
    assert project["license"] == {"text": "MIT"}
    licence = text(ROOT / "LICENSE")
    assert licence.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in licence
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in licence


def test_data_doc_states_the_lifetimes_the_code_sets():
    data = text(DATA)
    history_days = Settings.model_fields["history_ttl_seconds"].default // 86400
    assert f"`HISTORY_TTL_SECONDS` ({history_days} days)" in data
    assert f"| {ONCE_TTL_SECONDS // 3600} hours |" in data
    assert f"{USAGE_TTL_SECONDS // 86400} days after that day's last reply" in data
    assert f"the last {AUDIT_KEEP} changes" in data
    assert f"| {NAME_TTL_SECONDS // 3600} hour;" in data
    assert f"| {WELCOME_TTL_SECONDS // 86400} days |" in data


def test_data_doc_names_every_key_the_store_builds():
    k = Keys("P")
    shapes = [k.conversation("<conv>", part) for part in ("h", "t", "a", "q", "l")]
    shapes += [
        k.once("<conv>", "<post id>"),
        k.prompt("<scope>"),
        k.audit("<scope>"),
        k.usage("<YYYY-MM-DD>"),
        k.cache(UserNames.key("<team>", "<user>")),
        k.cache("teams:welcomed:<conversation id>"),
    ]
    data = text(DATA)
    for shape in shapes:
        assert f"`{shape}`" in data, shape


def test_contributing_names_only_files_and_tests_that_exist():
    doc = text(CONTRIBUTING)
    for path in set(re.findall(r"\b((?:tests|infra|bench|docs|bot|\.ci)/[\w./-]+)", doc)):
        file = path.partition("::")[0].rstrip(".")
        if file.startswith("bench/results"):
            continue  # what the benchmarks write (git-ignored)
        assert (ROOT / file).exists(), path
    for node in re.findall(r"(tests/[\w/]+\.py)::(\w+)", doc):
        assert re.search(rf"def {node[1]}\b", text(ROOT / node[0])), node


def test_contributing_lists_the_benches_and_the_playground_package_the_code_has():
    from bench.__main__ import BENCHES

    doc = flat(text(CONTRIBUTING))
    for number, name in enumerate(BENCHES, 1):
        assert f"`{name}` ({number})" in doc, name
    spec = importlib.util.spec_from_file_location(
        "playground", ROOT / "tests/e2e/test_teams_playground.py"
    )
    assert spec and spec.loader
    playground = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(playground)
    package = f"{playground.PACKAGE}@{playground.VERSION}"
    assert package in doc
    assert f"npx {package} start --disable-telemetry" in command("npx")  # the README's too


def test_readme_socket_mode_steps_are_the_manifest_comment_steps():
    manifest_comment = flat(text(ROOT / "infra/slack/manifest.yaml").split("_metadata:")[0])
    step = text(README).split("*Socket Mode (local, no public URL):*")[1].split("\n\n")[0]
    step = flat(step)
    for words in ("socket_mode_enabled: true", "`url` / `request_url`", "connections:write"):
        assert words in manifest_comment and words in step, words
    assert "SLACK_APP_TOKEN" in step and "xapp-" in step


def test_readme_playground_needs_no_browser_and_no_telemetry():
    teams = text(README).split("### 3. Test locally with the Microsoft 365 Agents Playground")[1]
    assert "TEAMSAPPTESTER_BROWSER=none" in teams
    assert "--disable-telemetry" in teams
    assert "HOST=127.0.0.1" in command("TEAMS_ALLOW_ANONYMOUS=true")  # serve refuses otherwise


def test_teams_package_path_in_the_readme_is_the_script_default():
    spec = importlib.util.spec_from_file_location(
        "build_package", ROOT / "infra/teams/build_package.py"
    )
    assert spec and spec.loader
    build_package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_package)
    shown = build_package.DEFAULT_OUTPUT.relative_to(ROOT).as_posix()
    assert f"# → {shown}" in text(README)
