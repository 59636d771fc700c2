"""Bench 2: throughput and Slack acknowledgement latency with 1,000 concurrent conversations.

1,000 conversations run at once against one `threadwise serve`. Each opens a new thread with a
mention (delivered twice, as `app_mention` and `message`, the way Slack delivers a mention to an
app subscribed to both), then follows up in the thread without a mention, again and again. The
fake model takes 1 s before it answers (then streams a ~20-token reply). Two phases:

- **capacity**: every conversation sends its next message as soon as the previous one is
  answered (a closed loop), so the process runs flat out: answered messages per second is what
  one process can do. Acknowledgements here queue behind a saturated event loop; their
  latency is reported, but it measures overload, not the ack path.
- **steady load at the goal rate**: the same 1,000 conversations send 200 messages/s in all
  (each every 5 s, staggered): the Slack ack latency p50/p95/p99 of every Events API request
  while the process answers 200 messages a second.

After each phase the load stops and the replies in flight finish; then every message must have
been answered exactly once, counted from the fake Slack's recorded messages (each reply carries
its message's tag). The goal: capacity ≥ 200 answered/s, ack p99 ≤ 50 ms at 200 messages/s,
nothing dropped, nothing answered twice.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from bench.common import summary_ms, table, write
from bench.stack import Stack, cpu_meter, running_stack
from bench.tags import next_tag, tag_of
from bench.traffic import channel_id, followup, mention, post_slack
from tests.support.fakes.fake_openai import _last_user_text
from tests.support.fakes.fake_slack import message, new_ts

GOAL_RATE, GOAL_ACK_P99_MS = 200.0, 50.0


def reply_fn(messages) -> str:
    tag = tag_of(_last_user_text(messages)) or ""
    return f"Noted {tag}: the rollout continues tomorrow morning after the checks pass, as planned."


MODEL = {"delay": 1.0, "reply_fn": reply_fn}


async def phase(
    st: Stack, conversations: int, warmup: float, window: float, rate: float | None
) -> dict:
    """One phase: `rate` None = closed loop (capacity), else that many messages/s in all."""
    rng = random.Random(2)
    channels = [channel_id() for _ in range(50)]
    sent_tags: list[str] = []
    acks: list[tuple[float, float]] = []  # (sent at, latency)
    done_at: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()
    period = conversations / rate if rate else 0.0  # seconds between one conversation's messages

    async def post(ev: dict, sent_at: float) -> None:
        try:
            acks.append((sent_at, await post_slack(st, ev)))
        except Exception as e:  # a refused or failed request is reported, not fatal
            errors.append(type(e).__name__ + ": " + str(e)[:80])

    async def conversation(i: int) -> None:
        offset = (i / conversations) * period if period else rng.random()
        await asyncio.sleep(offset)  # stagger the conversations
        ch, root, user = rng.choice(channels), new_ts(), rng.choice(st.users)
        first = True
        next_at = time.monotonic()
        while not stop.is_set():
            tag = next_tag()
            ts = root if first else new_ts()
            st.slack.replies.pop((ch, root), None)  # the previous turn's reply
            wait = st.slack.wait((ch, root))
            sent_tags.append(tag)
            now = time.monotonic()
            if first:
                text = f"status {tag} of the rollout?"
                ev = mention(text, user=user, channel=ch, ts=ts)
                dup = message(f"<@UBOT> {text}", user=user, channel=ch, ts=ts)
                await asyncio.gather(post(ev, now), post(dup, now))
            else:
                ev = followup(f"and then {tag}?", user=user, channel=ch, ts=ts, thread_ts=root)
                await post(ev, now)
            first = False
            try:
                done_at.append(await asyncio.wait_for(wait, 60))
            except TimeoutError:
                errors.append(f"no reply within 60 s to {tag}")
                return
            if period:
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    tasks = [asyncio.create_task(conversation(i)) for i in range(conversations)]
    await asyncio.sleep(warmup)
    t0 = time.monotonic()
    with cpu_meter(st) as cpu:
        await asyncio.sleep(window)
    t1 = time.monotonic()
    stop.set()
    await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)  # anything answered twice would arrive now

    answered = [t for t in done_at if t0 <= t < t1]
    window_acks = [lat for at, lat in acks if t0 <= at < t1]
    counts = st.slack.reply_tags()
    dropped = [t for t in sent_tags if counts.get(t, 0) == 0]
    twice = [t for t in sent_tags if counts.get(t, 0) > 1]
    return {
        "mode": "capacity (closed loop)" if rate is None else f"steady {rate:g} msg/s",
        "window_s": round(t1 - t0, 2),
        "answered_in_window": len(answered),
        "answered_per_s": round(len(answered) / (t1 - t0), 1),
        "ack": summary_ms(window_acks),
        "messages_sent": len(sent_tags),
        "events_sent": len(acks),
        "dropped": len(dropped),
        "answered_twice": len(twice),
        "errors": errors[:10],
        "error_count": len(errors),
        "cpu": cpu.per(len(answered)),
    }


async def run(conversations: int, warmup: float, window: float, rate: float) -> dict:
    async with running_stack(model=MODEL) as st:
        capacity = await phase(st, conversations, warmup, window, None)
        steady = await phase(st, conversations, warmup, window, rate)
        loop = st.event_loop()
        problems = st.log_problems()
        rss = round(st.rss_mb(), 1)
    clean = all(
        p["dropped"] == 0 and p["answered_twice"] == 0 and p["error_count"] == 0
        for p in (capacity, steady)
    )
    return {
        "conversations": conversations,
        "model_delay_s": MODEL["delay"],
        "event_loop": loop,
        "capacity": capacity,
        "steady": steady,
        "answered_per_s": capacity["answered_per_s"],
        "ack_p99_ms": steady["ack"]["p99_ms"],
        "dropped": capacity["dropped"] + steady["dropped"],
        "answered_twice": capacity["answered_twice"] + steady["answered_twice"],
        "error_count": capacity["error_count"] + steady["error_count"],
        "rss_mb": rss,
        "service_log_problems": problems,
        "goal": f">= {GOAL_RATE:g} answered/s (capacity), ack p99 <= {GOAL_ACK_P99_MS:g} ms at "
        f"{rate:g} msg/s, none dropped or answered twice",
        "met": capacity["answered_per_s"] >= GOAL_RATE
        and steady["ack"]["p99_ms"] <= GOAL_ACK_P99_MS
        and clean,
    }


def render(d: dict) -> str:
    rows = []
    for key in ("capacity", "steady"):
        p = d[key]
        rows.append(
            [
                p["mode"],
                p["answered_per_s"],
                p["ack"]["p50_ms"],
                p["ack"]["p95_ms"],
                p["ack"]["p99_ms"],
                p["messages_sent"],
                p["dropped"],
                p["answered_twice"],
                p["error_count"],
                f"{p['cpu']['service_cpu_util']:.0%}",
                p["cpu"]["service_cpu_ms_per_msg"],
            ]
        )
    return table(
        f"Throughput: {d['conversations']} concurrent Slack conversations, model "
        f"{d['model_delay_s']:g} s per reply, service on {d['event_loop']} "
        f"(goal {d['goal']}; met: {'yes' if d['met'] else 'NO'})",
        [
            "phase",
            "answered/s",
            "ack p50",
            "ack p95",
            "ack p99",
            "sent",
            "dropped",
            "twice",
            "errors",
            "service CPU",
            "CPU ms/answer",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--window", type=float, default=15.0)
    p.add_argument("--rate", type=float, default=GOAL_RATE)
    a = p.parse_args(argv)
    if a.smoke:
        data = asyncio.run(run(50, 1.5, 2.0, 20.0))
    else:
        data = asyncio.run(run(a.conversations, 6.0, a.window, a.rate))
    data["smoke"] = a.smoke
    print(render(data))
    write("throughput", data)
    return data


if __name__ == "__main__":
    main()
