"""The Teams app package: manifest (schema 1.22), icons, and the script that zips them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bot.commands import TABLE

ROOT = Path(__file__).resolve().parents[2]
TEAMS = ROOT / "infra" / "teams"
APP_ID = "9b2e7c1a-4d3f-4e8a-b6c5-1f0e2d3c4b5a"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, TEAMS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_package = _module("build_package")
draw_icons = _module("draw_icons")


def manifest() -> dict:
    return json.loads((TEAMS / "manifest.json").read_text())


def run(*args: str, cwd: Path, folder: Path = TEAMS) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(folder / "build_package.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_manifest_is_schema_1_22_with_a_bot_in_every_scope():
    m = manifest()
    assert m["$schema"].endswith("/teams/v1.22/MicrosoftTeams.schema.json")
    assert m["manifestVersion"] == "1.22"
    [bot] = m["bots"]
    assert bot["botId"] == m["id"] == "${{MICROSOFT_APP_ID}}"
    assert bot["scopes"] == ["personal", "team", "groupChat"]
    assert bot["isNotificationOnly"] is False
    assert m["icons"] == {"color": "color.png", "outline": "outline.png"}


def test_command_list_offers_the_chat_commands():
    [commands] = manifest()["bots"][0]["commandLists"]
    assert set(commands["scopes"]) == {"personal", "team", "groupChat"}
    titles = [c["title"] for c in commands["commands"]]
    for command in ("!help", "!reset", "!prompt", "!prompt set", "!usage"):
        assert command in titles
    assert all(t.startswith("!") for t in titles)  # the bot's command syntax, not slash
    # Every listed command is a row of the core's command table (or a row's first word).
    names = {row.name for row in TABLE} | {row.name.split()[0] for row in TABLE}
    for title in titles:
        assert title.removeprefix("!") in names, title


def test_icons_have_the_sizes_teams_requires_and_the_outline_is_white_on_transparent():
    width, height, rows = build_package.read_png((TEAMS / "color.png").read_bytes())
    assert (width, height) == (192, 192)
    assert all(px[3] == 255 for row in rows for px in row)  # full-bleed colour icon
    width, height, rows = build_package.read_png((TEAMS / "outline.png").read_bytes())
    assert (width, height) == (32, 32)
    pixels = [px for row in rows for px in row]
    assert any(px[3] == 0 for px in pixels) and any(px[3] == 255 for px in pixels)
    assert all(px[:3] == (255, 255, 255) for px in pixels if px[3])


def test_committed_icons_are_what_the_drawing_script_draws():
    assert (TEAMS / "color.png").read_bytes() == draw_icons.color_icon()
    assert (TEAMS / "outline.png").read_bytes() == draw_icons.outline_icon()


def test_package_zip_holds_manifest_with_the_app_id_and_both_icons(tmp_path):
    done = run(
        "--app-id", APP_ID.upper(), "--output", "out/pkg.zip", "--version", "1.2.3", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "out" / "pkg.zip") as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        built = json.loads(package.read("manifest.json"))
        assert package.read("color.png") == (TEAMS / "color.png").read_bytes()
    assert built["id"] == built["bots"][0]["botId"] == APP_ID
    assert built["version"] == "1.2.3"
    assert "${{" not in json.dumps(built)


def _copy_of_the_script(tmp_path: Path) -> Path:
    """infra/teams copied to a temp folder, so the default output lands there, not in the repo."""
    folder = tmp_path / "teams"
    folder.mkdir()
    for name in ("build_package.py", "manifest.json", "color.png", "outline.png"):
        (folder / name).write_bytes((TEAMS / name).read_bytes())
    return folder


def test_package_takes_the_app_id_from_the_environment_and_lands_beside_the_script(tmp_path):
    folder = _copy_of_the_script(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = subprocess.run(
        [sys.executable, str(folder / "build_package.py")],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MICROSOFT_APP_ID": APP_ID},
    )
    assert done.returncode == 0, done.stderr
    assert list(cwd.iterdir()) == []  # nothing in the working directory (the repo root)
    assert (folder / "build" / "threadwise-teams.zip").exists()
    assert "build/threadwise-teams.zip" in done.stdout


def test_default_package_path_is_git_ignored():
    assert build_package.DEFAULT_OUTPUT == TEAMS / "build" / "threadwise-teams.zip"
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    done = subprocess.run(
        ["git", "check-ignore", "-q", str(build_package.DEFAULT_OUTPUT)], cwd=ROOT
    )
    assert done.returncode == 0, "infra/teams/build/ must be covered by .gitignore"


def test_privacy_terms_and_website_urls_and_developer_name_are_set_by_flags(tmp_path):
    done = run(
        "--app-id", APP_ID, "--output", "pkg.zip",
        "--privacy-url", "https://contoso.example/privacy",
        "--terms-url", "https://contoso.example/terms",
        "--website-url", "https://contoso.example/",
        "--developer-name", "Contoso IT",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "note:" not in done.stderr
    with zipfile.ZipFile(tmp_path / "pkg.zip") as package:
        developer = json.loads(package.read("manifest.json"))["developer"]
    assert developer == {
        "name": "Contoso IT",
        "websiteUrl": "https://contoso.example/",
        "privacyUrl": "https://contoso.example/privacy",
        "termsOfUseUrl": "https://contoso.example/terms",
    }


def test_without_privacy_and_terms_flags_the_project_urls_are_used_with_a_note(tmp_path):
    done = run("--app-id", APP_ID, "--output", "pkg.zip", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--privacy-url" in done.stderr and "--terms-url" in done.stderr
    with zipfile.ZipFile(tmp_path / "pkg.zip") as package:
        developer = json.loads(package.read("manifest.json"))["developer"]
    assert developer == manifest()["developer"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "MICROSOFT_APP_ID"),
        (("--app-id", "my-bot"), "not a GUID"),
        (("--app-id", APP_ID, "--version", "one"), "version"),
        (("--app-id", APP_ID, "--name", "A name far too long for the Teams app bar"), "name.short"),
        (("--app-id", APP_ID, "--privacy-url", "http://contoso.example/p"), "developer.privacyUrl"),
        (("--app-id", APP_ID, "--terms-url", "contoso.example/terms"), "developer.termsOfUseUrl"),
        (("--app-id", APP_ID, "--developer-name", "x" * 33), "developer.name"),
    ],
)
def test_bad_input_is_refused_with_a_reason_and_no_zip(tmp_path, args, message):
    folder = _copy_of_the_script(tmp_path)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    done = run(*args, cwd=cwd, folder=folder)
    assert done.returncode != 0
    assert message in done.stderr
    assert list(cwd.iterdir()) == [] and not (folder / "build").exists()


def test_outline_icon_with_colour_is_refused(tmp_path, monkeypatch):
    for name in ("manifest.json", "color.png"):
        (tmp_path / name).write_bytes((TEAMS / name).read_bytes())
    red = [[(255, 0, 0, 255)] * 32 for _ in range(32)]
    (tmp_path / "outline.png").write_bytes(draw_icons.png(32, 32, red))
    monkeypatch.setattr(build_package, "HERE", tmp_path)
    monkeypatch.setattr(build_package, "MANIFEST", tmp_path / "manifest.json")
    with pytest.raises(build_package.PackageError, match="white on a transparent"):
        build_package.build(APP_ID, tmp_path / "pkg.zip")
