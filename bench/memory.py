"""Bench 6: memory of the service as conversations are served.

One `threadwise serve` answers conversations — each a new Slack thread (a mention, delivered
twice as Slack does; one in five gets a follow-up in the thread), one in ten a Teams personal
chat — 100 at a time. After 1,000, 5,000, 10,000 and 15,000 conversations (replies finished, a
second to settle) it records the process's RSS (`VmRSS`) and its Python heap: allocated pymalloc
blocks and GC-tracked objects after a collection, written by the service on SIGUSR1 through
bench/heap_site (a `sitecustomize` on the child's PYTHONPATH; nothing else changes).

Redis holds the history, locks, markers and names; what the process may keep per conversation
is bounded caches (the largest: the responder's LRU of the conversations it answers,
`KNOWN_CONVERSATIONS` = 10,000). The goal — no growth beyond bounded caches — is judged once
they are full, from 10,000 to 15,000 conversations: the Python heap grows by under 1% (blocks
and objects), and RSS by at most 2 MB (RSS also moves with allocator fragmentation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import tempfile
from pathlib import Path

from bench.common import table, write
from bench.stack import Stack, cpu_meter, running_stack
from bench.tags import next_tag
from bench.traffic import channel_id, followup, mention, post_slack, post_teams, teams_activity
from bot import responder
from tests.support.fakes.fake_slack import message, new_ts

GOAL_RSS_MB, GOAL_HEAP = 2.0, 0.01
CONCURRENCY = 100


async def serve_conversations(st: Stack, n: int, rng: random.Random) -> None:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def slack_conv(i: int) -> None:
        ch, root, user = channel_id(), new_ts(), rng.choice(st.users)
        tag = next_tag()
        wait = st.slack.wait((ch, root))
        await asyncio.gather(
            post_slack(st, mention(f"what about {tag}?", user=user, channel=ch, ts=root)),
            post_slack(st, message(f"<@UBOT> what about {tag}?", user=user, channel=ch, ts=root)),
        )
        await asyncio.wait_for(wait, 60)
        st.slack.replies.pop((ch, root), None)
        if i % 5:
            return
        wait = st.slack.wait((ch, root))
        fu = followup(f"and {next_tag()}?", user=user, channel=ch, ts=new_ts(), thread_ts=root)
        await post_slack(st, fu)
        await asyncio.wait_for(wait, 60)
        st.slack.replies.pop((ch, root), None)

    async def teams_conv() -> None:
        act = teams_activity(st, f"what about {next_tag()}?")
        conv = act["conversation"]["id"]
        wait = st.teams.wait(conv)
        await post_teams(st, act)
        await asyncio.wait_for(wait, 60)
        st.teams.replies.pop(conv, None)

    async def worker() -> None:
        while True:
            try:
                i = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await (teams_conv() if i % 10 == 9 else slack_conv(i))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def _read_heap(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


async def heap(st: Stack, out: str, n: int) -> dict:
    """Ask the service for its heap size (bench/heap_site) and read the answer."""
    os.kill(st.pid, signal.SIGUSR1)
    for _ in range(100):
        await asyncio.sleep(0.1)
        if (data := _read_heap(Path(f"{out}.{n}.json"))) is not None:
            return data
    return {"blocks": None, "objects": None}


async def run(checkpoints: list[int]) -> dict:
    rng = random.Random(6)
    points = []
    out = os.path.join(tempfile.mkdtemp(prefix="tw-bench-heap-"), "heap")
    site = Path(__file__).with_name("heap_site")
    env = {"PYTHONPATH": f"{site}{os.pathsep}{site.parents[1]}", "BENCH_HEAP_OUT": out}
    async with running_stack(model={"reply": "Fine, noted."}, env=env) as st:
        st.model.calls.clear()
        start_rss = st.rss_mb()
        served = 0
        with cpu_meter(st) as cpu:
            for i, target in enumerate(checkpoints, 1):
                await serve_conversations(st, target - served, rng)
                served = target
                st.model.calls.clear()  # the bench's own bookkeeping, not the service's
                await asyncio.sleep(1.0)
                rss = round(st.rss_mb(), 1)
                points.append({"conversations": served, "rss_mb": rss, **await heap(st, out, i)})
        problems = st.log_problems()
    first, full, last = points[0], points[-2], points[-1]
    rss_growth = last["rss_mb"] - full["rss_mb"]

    def rel(key: str) -> float:
        return (last[key] - full[key]) / full[key] if full.get(key) else float("nan")

    heap_growth = max(rel("blocks"), rel("objects"))
    return {
        "start_rss_mb": round(start_rss, 1),
        "points": points,
        "known_conversations_cache": getattr(responder, "KNOWN_CONVERSATIONS", None),
        "growth_until_caches_full_mb": round(full["rss_mb"] - first["rss_mb"], 1),
        "rss_growth_mb": round(rss_growth, 1),
        "heap_growth": {"blocks": round(rel("blocks"), 4), "objects": round(rel("objects"), 4)},
        "conversations_per_s": round(last["conversations"] / cpu.wall, 1),
        "service_log_problems": problems,
        "goal": f"from {full['conversations']:,} to {last['conversations']:,} conversations "
        f"(caches full): Python heap < {GOAL_HEAP:.0%} growth, RSS <= {GOAL_RSS_MB:g} MB",
        "met": rss_growth <= GOAL_RSS_MB and heap_growth < GOAL_HEAP,
    }


def render(d: dict) -> str:
    g = d["heap_growth"]
    return table(
        f"Service memory as conversations are served (RSS at start {d['start_rss_mb']} MB; "
        f"goal {d['goal']}; met: {'yes' if d['met'] else 'NO'})",
        ["conversations served", "RSS MB", "Python heap blocks", "GC-tracked objects"],
        [[f"{p['conversations']:,}", p["rss_mb"], p["blocks"], p["objects"]] for p in d["points"]]
        + [
            [
                "growth, caches full",
                f"{d['rss_growth_mb']:+} MB",
                f"{g['blocks']:+.2%}",
                f"{g['objects']:+.2%}",
            ]
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    data = asyncio.run(run([100, 200, 300] if a.smoke else [1000, 5000, 10000, 15000]))
    data["smoke"] = a.smoke
    print(render(data))
    write("memory", data)
    return data


if __name__ == "__main__":
    main()
