"""A light Bicep reader: strings, comments and brackets checked, then params, outputs, modules.

The Bicep compiler is not available where the tests run, so `scan_bicep` blanks comments and
pairs brackets itself, and the helpers below read declarations off the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.support.deploy import CONTAINER_APP_BICEP

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


# ------------------------------------------------------------------------------------------
# The container app's environment variables
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
