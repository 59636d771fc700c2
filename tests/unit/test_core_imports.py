"""The core (`bot`) stands without any platform SDK: dependencies point inward.

Only the adapters talk to slack_sdk, slack_bolt and the Microsoft 365 Agents SDK; only the
composition root (`bot.cli`) names the adapters.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_SDKS = ("slack_sdk", "slack_bolt", "microsoft_agents")
COMPOSITION_ROOT = "bot/cli.py"

# Every module of the package, found as it is now (bot.store may be a module or a package),
# imported with the platform SDKs made unimportable.
_IMPORT_ALL = textwrap.dedent(
    """
    import importlib
    import importlib.abc
    import pkgutil
    import sys

    BLOCKED = {blocked!r}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is blocked: the core must not need it")
            return None

    sys.meta_path.insert(0, Blocker())
    import bot

    def fail(name):
        raise

    names = [
        m.name
        for m in pkgutil.walk_packages(bot.__path__, "bot.", onerror=fail)
        if m.name != "bot.__main__"  # the `python -m bot` script: it runs the CLI
    ]
    for name in names:
        importlib.import_module(name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print(len(names), "modules:", " ".join(names))
    """
)


def test_every_bot_module_imports_with_the_platform_sdks_blocked():
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL.format(blocked=PLATFORM_SDKS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    # the walk found the core's modules, not an empty or half-imported package
    for name in ("bot.cli", "bot.doctor", "bot.responder", "bot.server", "bot.llm"):
        assert f" {name} " in proc.stdout + " ", proc.stdout


def _imported(path: Path) -> set[str]:
    """Every module an import statement in `path` names, at any depth (lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_core_module_imports_a_platform_sdk_even_inside_a_function():
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        for name in _imported(path)
        if name.split(".")[0] in PLATFORM_SDKS
    }
    assert not offenders, offenders


def test_only_the_composition_root_names_the_adapters():
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "bot").rglob("*.py"))
        if path.relative_to(ROOT).as_posix() != COMPOSITION_ROOT
        for name in _imported(path)
        if name.split(".")[0] == "adapters"
    }
    assert not offenders, offenders
