"""Reading the shell commands out of the README's code blocks, for tests that run them."""

from __future__ import annotations

import re
import shlex

from tests.support.helpers import ROOT

_BLOCK = re.compile(r"^```(?:sh|bash)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def shell_lines(path=ROOT / "README.md") -> list[str]:
    """Every command of every sh/bash block, continuation lines joined, comments dropped."""
    lines: list[str] = []
    for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def command(*needles: str, path=ROOT / "README.md") -> str:
    """The one README command that contains every needle."""
    found = [line for line in shell_lines(path) if all(n in line for n in needles)]
    assert len(found) == 1, f"expected one README command with {needles}, found {found}"
    return found[0]


def split_env(line: str) -> tuple[dict[str, str], list[str]]:
    """`A=1 B=2 prog args  # comment` → ({"A": "1", "B": "2"}, ["prog", "args"])."""
    words = shlex.split(line, comments=True)
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    return env, words
