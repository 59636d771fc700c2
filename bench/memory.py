"""Bench 6: resident memory of the service as conversations are served.

One `threadwise serve` answers conversations — each a new Slack thread (a mention, delivered
twice as Slack does; one in five gets a follow-up in the thread), one in ten a Teams personal
chat — 100 at a time. RSS (`VmRSS` of the serve process) is read after 1,000, 5,000, 10,000 and
15,000 conversations, once the replies in flight have finished and the process had a second to
settle. Redis holds the history, locks, markers and names; what the process may keep per
conversation is bounded caches (the largest: the responder's LRU of conversations it answers,
`KNOWN_CONVERSATIONS`, 10,000 entries). The goal — no growth beyond bounded caches — is judged
once they are full: ≤ 1 MB more RSS at 15,000 conversations than at 10,000.
"""

from __future__ import annotations

import argparse
import asyncio
import random

from bench.common import table, write
from bench.harness import (
    Stack,
    channel_id,
    cpu_meter,
    followup,
    mention,
    next_tag,
    post_slack,
    post_teams,
    running_stack,
    teams_activity,
)
from bot import responder
from tests.fakes.fake_slack import message, new_ts

GOAL_GROWTH_MB = 1.0
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


async def run(checkpoints: list[int]) -> dict:
    rng = random.Random(6)
    points = []
    async with running_stack(model={"reply": "Fine, noted."}) as st:
        st.model.calls.clear()
        start_rss = st.rss_mb()
        served = 0
        with cpu_meter(st) as cpu:
            for target in checkpoints:
                await serve_conversations(st, target - served, rng)
                served = target
                st.model.calls.clear()  # the bench's own bookkeeping, not the service's
                await asyncio.sleep(1.0)
                points.append({"conversations": served, "rss_mb": round(st.rss_mb(), 1)})
        problems = st.log_problems()
    first, full, last = points[0], points[-2], points[-1]
    growth = last["rss_mb"] - full["rss_mb"]
    per_conv_kb = growth * 1024 / max(last["conversations"] - full["conversations"], 1)
    return {
        "start_rss_mb": round(start_rss, 1),
        "points": points,
        "known_conversations_cache": getattr(responder, "KNOWN_CONVERSATIONS", None),
        "growth_until_caches_full_mb": round(full["rss_mb"] - first["rss_mb"], 1),
        "growth_mb": round(growth, 1),
        "growth_kb_per_conversation": round(per_conv_kb, 3),
        "conversations_per_s": round(last["conversations"] / cpu.wall, 1),
        "service_log_problems": problems,
        "goal": f"<= {GOAL_GROWTH_MB:g} MB growth from {full['conversations']:,} to "
        f"{last['conversations']:,} conversations (bounded caches full)",
        "met": growth <= GOAL_GROWTH_MB,
    }


def render(d: dict) -> str:
    return table(
        f"Service RSS as conversations are served (started at {d['start_rss_mb']} MB; "
        f"goal {d['goal']})",
        ["conversations served", "RSS MB"],
        [[f"{p['conversations']:,}", p["rss_mb"]] for p in d["points"]]
        + [
            [
                "growth, caches full",
                f"{d['growth_mb']} MB ({d['growth_kb_per_conversation']} KB/conversation)",
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
