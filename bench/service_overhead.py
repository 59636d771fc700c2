"""Bench 1: service overhead per answered message at a steady 50 messages/s.

For each message: event sent (the signed Slack request, or the Teams activity, leaves the load
generator) → reply fully posted (Slack `chat.stopStream`; Teams the final message), minus the
fake model's own time for that message (request arrival at the fake → last byte written, as the
fake itself timed it). What is left is Threadwise: HTTP + signature + routing, the name lookup,
Redis (claim/lock, load, commit), building the prompt, the Slack/Teams calls and their pacing.

Slack: every message is a mention that opens a new thread in a channel, from one of 20 people
(names cached in Redis after their first message), streamed with chat.startStream/appendStream/
stopStream. Teams: every message opens a personal (1:1) chat, streamed with Teams' protocol,
which allows one stream update a second; that pacing is reported separately ("Teams pacing"),
and the goal is judged on the overhead without it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from bench.common import summary_ms, table, write
from bench.stack import Stack, cpu_meter, running_stack
from bench.tags import next_tag
from bench.traffic import channel_id, mention, paced, post_slack, post_teams, teams_activity
from tests.support.fakes.fake_slack import new_ts

RATE = 50.0
GOAL_P50_MS, GOAL_P99_MS = 10.0, 40.0
TEAMS_INTERVAL = 1.0  # adapters.teams.stream.TeamsSink.interval
WORDS = "the quick brown fox jumps over the lazy dog and then it rests a while".split()


def reply_fn(messages) -> str:
    """A ~40-token reply that carries the message's tag, so each reply maps to its message."""
    from bench.tags import tag_of
    from tests.support.fakes.fake_openai import _last_user_text

    tag = tag_of(_last_user_text(messages)) or ""
    return f"Sure {tag}. " + " ".join(WORDS[i % len(WORDS)] for i in range(36)) + "."


MODEL = {"delay": 0.2, "tokens_per_second": 200.0, "reply_fn": reply_fn}


async def slack_phase(st: Stack, n: int, warmup: int) -> dict:
    rng = random.Random(1)
    sent: dict[str, tuple[float, tuple[str, str]]] = {}
    acks: list[float] = []

    async def one(i: int) -> None:
        tag = next_tag()
        ch, ts = channel_id(), new_ts()
        text = f"question {tag} about our rollout?"
        ev = mention(text, user=rng.choice(st.users), channel=ch, ts=ts)
        t0 = time.monotonic()
        wait = st.slack.wait((ch, ts))
        acks.append(await post_slack(st, ev))
        sent[tag] = (t0, (ch, ts))
        await asyncio.wait_for(wait, 30)

    await paced(RATE, warmup, one)  # names cached, connections warm
    sent.clear()
    acks.clear()
    with cpu_meter(st) as cpu:
        await paced(RATE, n, one)
    return measure(st, sent, lambda key: st.slack.replies[key], pacing=None) | {
        "ack": summary_ms(acks),
        "cpu": cpu.per(n),
    }


async def teams_phase(st: Stack, n: int, warmup: int) -> dict:
    sent: dict[str, tuple[float, str]] = {}
    acks: list[float] = []

    async def one(i: int) -> None:
        tag = next_tag()
        act = teams_activity(st, f"question {tag} about our rollout?")
        conv = act["conversation"]["id"]
        t0 = time.monotonic()
        wait = st.teams.wait(conv)
        acks.append(await post_teams(st, act))
        sent[tag] = (t0, conv)
        await asyncio.wait_for(wait, 30)

    await paced(RATE, warmup, one)
    sent.clear()
    acks.clear()
    with cpu_meter(st) as cpu:
        await paced(RATE, n, one)
    return measure(st, sent, lambda key: st.teams.replies[key], pacing=TEAMS_INTERVAL) | {
        "ack": summary_ms(acks),
        "cpu": cpu.per(n),
    }


def measure(st: Stack, sent: dict, reply_of, pacing: float | None) -> dict:
    overhead, excl_pacing, before, after, model = [], [], [], [], []
    for tag, (t0, key) in sent.items():
        call = st.model.calls.get(tag)
        r = reply_of(key)
        if call is None or call.ended is None or r.done is None:
            continue
        model_time = call.ended - call.started
        total = r.done - t0 - model_time
        overhead.append(total)
        model.append(model_time)
        before.append(call.started - t0)
        after.append(r.done - call.ended)
        if pacing is not None and r.last_stream_post is not None:
            hold = max(0.0, r.last_stream_post + pacing - call.ended)
            excl_pacing.append(total - hold)
    out = {
        "messages": len(sent),
        "measured": len(overhead),
        "overhead": summary_ms(overhead),
        "before_model": summary_ms(before),
        "after_model": summary_ms(after),
        "model": summary_ms(model),
    }
    if pacing is not None:
        out["overhead_excl_pacing"] = summary_ms(excl_pacing)
    return out


def judged(res: dict) -> dict:
    return res.get("overhead_excl_pacing") or res["overhead"]


async def run(n: int, warmup: int, platforms: list[str]) -> dict:
    out: dict = {"rate_per_s": RATE, "model": {k: v for k, v in MODEL.items() if k != "reply_fn"}}
    async with running_stack(model=MODEL, env={"TOKEN_LIMIT": "16384"}) as st:
        if "slack" in platforms:
            out["slack"] = await slack_phase(st, n, warmup)
        if "teams" in platforms:
            out["teams"] = await teams_phase(st, n, warmup)
    for p in platforms:
        j = judged(out[p])
        out[p]["met"] = j["p50_ms"] <= GOAL_P50_MS and j["p99_ms"] <= GOAL_P99_MS
    out["goal"] = f"p50 <= {GOAL_P50_MS:g} ms, p99 <= {GOAL_P99_MS:g} ms"
    return out


def render(data: dict) -> str:
    rows = []
    for p in ("slack", "teams"):
        if p not in data:
            continue
        r = data[p]
        rows.append(
            [
                p,
                f"{r['measured']}/{r['messages']}",
                r["overhead"]["p50_ms"],
                r["overhead"]["p95_ms"],
                r["overhead"]["p99_ms"],
                (
                    f"{r['overhead_excl_pacing']['p50_ms']} / {r['overhead_excl_pacing']['p99_ms']}"
                    if "overhead_excl_pacing" in r
                    else "-"
                ),
                f"{r['before_model']['p50_ms']} / {r['after_model']['p50_ms']}",
                r["model"]["p50_ms"],
                r["ack"]["p99_ms"],
                "yes" if r["met"] else "NO",
            ]
        )
    return table(
        f"Service overhead per answered message at {data['rate_per_s']:g} msg/s "
        f"(reply posted − event sent − model time; ms; goal {data['goal']})",
        [
            "platform",
            "n",
            "p50",
            "p95",
            "p99",
            "excl. Teams pacing p50/p99",
            "before/after model p50",
            "model p50",
            "ack p99",
            "met",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--platform", choices=["slack", "teams", "both"], default="both")
    a = p.parse_args(argv)
    n, warmup = (40, 10) if a.smoke else (a.messages, 100)
    platforms = ["slack", "teams"] if a.platform == "both" else [a.platform]
    data = asyncio.run(run(n, warmup, platforms))
    data["smoke"] = a.smoke
    print(render(data))
    write("service_overhead", data)
    return data


if __name__ == "__main__":
    main()
