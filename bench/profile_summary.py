"""Summarise a py-spy "raw" (collapsed stacks) profile of the service: where its CPU goes.

    BENCH_PROFILE=/tmp/serve.txt python -m bench service_overhead
    python -m bench.profile_summary /tmp/serve.txt [--top 25] [--match PATTERN]

Idle samples (the event loop waiting in epoll/select) are left out, so percentages are of the
time the service was busy. "inclusive" counts a frame once per sample it appears in.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

IDLE = re.compile(r"\b(select|poll|epoll_wait|_run_once \(asyncio/base_events.py:\d+\)$)")


def frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rpartition(" ")
    return stack.split(";"), int(count)


def short(frame: str) -> str:
    # "func (path/to/site-packages/pkg/mod.py:123)" → "func (pkg/mod.py)"
    m = re.match(r"(.*) \((.*?):?(\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.group(1), m.group(2)
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})"


def summarise(path: Path, top: int, match: str | None) -> str:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    busy = idle = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        stack, n = frames(line)
        leaf = stack[-1]
        if "select" in leaf or "epoll" in leaf or "poll (" in leaf:
            idle += n
            continue
        if match and not any(match in f for f in stack):
            continue
        busy += n
        self_c[short(leaf)] += n
        for f in {short(f) for f in stack}:
            incl[f] += n
    out = [f"busy samples {busy} ({busy / max(busy + idle, 1):.0%} of samples), idle {idle}"]
    out.append("\nself time (top):")
    out += [f"  {n / busy:6.1%}  {f}" for f, n in self_c.most_common(top)]
    out.append("\ninclusive time (top):")
    out += [f"  {n / busy:6.1%}  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("path", type=Path)
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--match", help="only stacks containing this text")
    a = p.parse_args(argv)
    print(summarise(a.path, a.top, a.match))


if __name__ == "__main__":
    main()
