"""Bench 8: one process under a cold burst: auth.test calls, time to the model, stream calls.

A fresh `threadwise serve` (the measurement starts right after start-up) gets a burst of N
concurrent Slack mentions, each in its own thread, with a 1-second model. Measured:

- `auth.test` calls during start-up and the burst (goal: 1, the start-up's);
- mention sent → the model's request arrives, p50/p99 (the pre-model work of the burst; about
  8 ms at low load);
- `chat.appendStream` calls per reply (a short reply needs none: startStream + stopStream);
- answered msg/s and the service's CPU per answer over the burst.

    python -m bench lean                     # N=100, then N=1000
    python -m bench.lean --sizes 100 500     # other burst sizes
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import summary_ms, table, write
from bench.stack import cpu_meter, running_stack
from bench.tags import next_tag
from bench.throughput import MODEL
from bench.traffic import channel_id, mention, post_slack
from tests.support.fakes.fake_slack import new_ts


async def burst(n: int) -> dict:
    async with running_stack(model=MODEL) as st:
        st.slack.keep_calls = True  # count every call, the start-up auth.test included
        sent: dict[str, float] = {}
        waits = []
        with cpu_meter(st) as cpu:
            events = []
            for _ in range(n):
                ch, root, tag = channel_id(), new_ts(), next_tag()
                ev = mention(f"status {tag}?", user=st.users[0], channel=ch, ts=root)
                events.append((tag, ev))
                waits.append(st.slack.wait((ch, root)))

            async def send(tag: str, ev: dict) -> None:
                sent[tag] = time.monotonic()
                await post_slack(st, ev)

            t0 = time.monotonic()
            await asyncio.gather(*(send(tag, ev) for tag, ev in events))
            done = await asyncio.wait_for(asyncio.gather(*waits), 600)
            wall = max(done) - t0
        calls = st.slack.state.calls
        to_model = [
            st.model.calls[tag].started - at for tag, at in sent.items() if tag in st.model.calls
        ]
        counts = st.slack.reply_tags()
        problems = st.log_problems()
    return {
        "burst": n,
        "auth_test_calls": sum(c.method == "auth.test" for c in calls),
        "mention_to_model": summary_ms(to_model),
        "append_stream_calls": sum(c.method == "chat.appendStream" for c in calls),
        "replies_with_append": len(
            {c.params.get("ts") for c in calls if c.method == "chat.appendStream"}
        ),
        "answered": sum(1 for tag in sent if counts.get(tag, 0) == 1),
        "answered_twice": sum(1 for tag in sent if counts.get(tag, 0) > 1),
        "answered_per_s": round(n / wall, 1),
        "cpu": cpu.per(n),
        "service_log_problems": problems,
    }


def render(rows: list[dict]) -> str:
    return table(
        "Lean: a cold burst of N concurrent Slack mentions, model 1 s",
        [
            "N",
            "auth.test",
            "→model p50",
            "→model p99",
            "appendStream",
            "replies w/ append",
            "answered",
            "twice",
            "answered/s",
            "CPU ms/answer",
        ],
        [
            [
                r["burst"],
                r["auth_test_calls"],
                r["mention_to_model"]["p50_ms"],
                r["mention_to_model"]["p99_ms"],
                r["append_stream_calls"],
                r["replies_with_append"],
                r["answered"],
                r["answered_twice"],
                r["answered_per_s"],
                r["cpu"]["service_cpu_ms_per_msg"],
            ]
            for r in rows
        ],
    )


async def run(sizes: list[int]) -> dict:
    rows = [await burst(n) for n in sizes]
    return {"rows": rows}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    a = p.parse_args(argv)
    data = asyncio.run(run([20] if a.smoke else a.sizes))
    data["smoke"] = a.smoke
    print(render(data["rows"]))
    write("lean", data)
    return data


if __name__ == "__main__":
    main()
