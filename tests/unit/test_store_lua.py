"""The Redis store's Lua scripts are package data: the installed package (the image installs a
wheel, not this tree) must carry them and load them with importlib.resources."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from bot.store.redis import SCRIPTS, RedisStore, load_script

ROOT = Path(__file__).resolve().parents[2]


def test_every_lua_file_is_part_of_a_script_and_every_script_loads():
    files = {p.name for p in resources.files("bot.store").joinpath("lua").iterdir()}
    assert files == {f"{part}.lua" for parts in SCRIPTS.values() for part in parts}
    for name in SCRIPTS:
        assert "return" in load_script(name)
    # The claim and the retry share one lock function, defined before either uses it.
    assert load_script("begin").startswith("-- The FIFO lock")
    assert load_script("try").startswith("-- The FIFO lock")


def test_the_store_registers_the_scripts_read_from_package_data():
    store = RedisStore("redis://127.0.0.1:9/0", prefix="p:", history_budget=10, history_ttl=60)
    registered = {
        "begin": store._begin,
        "try": store._try,
        "renew": store._renew_s,
        "release": store._release,
        "load": store._load,
        "append": store._append,
        "prompt": store._prompt,
        **store.rights_script,  # meter, erase, anonymise, budget (bot/store/rights_redis.py)
    }
    assert {name: s.script for name, s in registered.items()} == {
        name: load_script(name) for name in SCRIPTS
    }


def test_a_built_package_carries_the_lua_scripts(tmp_path):
    """Built the way the wheel is (setuptools' build_py from pyproject.toml), then imported."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("bot", "adapters"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "out"
    build = [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py"]
    subprocess.run([*build, "--build-lib", str(out)], cwd=src, check=True, capture_output=True)

    built = {p.name for p in (out / "bot" / "store" / "lua").glob("*.lua")}
    assert built == {f"{part}.lua" for parts in SCRIPTS.values() for part in parts}
    code = (
        f"import sys; sys.path.insert(0, {str(out)!r}); import bot.store.redis as r; "
        f"assert r.__file__.startswith({str(out)!r}), r.__file__; "
        "[r.load_script(n) for n in r.SCRIPTS]"
    )
    subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, check=True)
