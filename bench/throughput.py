"""Bench 2: throughput and Slack acknowledgement latency with 1,000 concurrent conversations.

1,000 conversations run at once against one `threadwise serve`, each a closed loop: a person
mentions the bot in a new thread (delivered twice, as `app_mention` and `message`, the way Slack
delivers a mention to an app subscribed to both), waits for the reply, then follows up in the
thread without a mention, and so on. The fake model takes 1 s before it answers (then streams a
~25-token reply). Measured over a steady window after a warm-up:

- answered messages per second (replies completed by `chat.stopStream` in the window),
- the acknowledgement latency of every Events API request sent in the window (p50/p95/p99),
- after the load stops and the replies in flight finish: every message answered exactly once,
  counted from the fake Slack's recorded messages (each reply carries its message's tag).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

from bench.common import summary_ms, table, write
from bench.harness import (
    Stack,
    channel_id,
    cpu_meter,
    followup,
    mention,
    next_tag,
    post_slack,
    running_stack,
    tag_of,
)
from tests.fakes.fake_openai import _last_user_text
from tests.fakes.fake_slack import message, new_ts

GOAL_RATE, GOAL_ACK_P99_MS = 200.0, 50.0


def reply_fn(messages) -> str:
    tag = tag_of(_last_user_text(messages)) or ""
    return f"Noted {tag}: the rollout continues tomorrow morning after the checks pass, as planned."


MODEL = {"delay": 1.0, "reply_fn": reply_fn}


async def run(conversations: int, warmup: float, window: float) -> dict:
    async with running_stack(model=MODEL) as st:
        return await _run(st, conversations, warmup, window)


async def _run(st: Stack, conversations: int, warmup: float, window: float) -> dict:
    rng = random.Random(2)
    channels = [channel_id() for _ in range(50)]
    sent_tags: list[str] = []
    acks: list[tuple[float, float]] = []  # (sent at, latency)
    done_at: list[float] = []
    errors: list[str] = []
    stop = asyncio.Event()

    async def post(ev, sent_at):
        try:
            acks.append((sent_at, await post_slack(st, ev)))
        except Exception as e:  # a refused or failed request is reported, not fatal
            errors.append(type(e).__name__ + ": " + str(e)[:80])

    async def conversation(i: int) -> None:
        await asyncio.sleep(rng.random() * 1.0)  # spread the first messages over a second
        ch, root = rng.choice(channels), new_ts()
        user = rng.choice(st.users)
        first = True
        while not stop.is_set():
            tag = next_tag()
            ts = root if first else new_ts()
            st.slack.replies.pop((ch, root), None)  # the previous turn's reply
            wait = st.slack.wait((ch, root))
            sent_tags.append(tag)
            now = time.monotonic()
            if first:
                ev = mention(f"status {tag} of the rollout?", user=user, channel=ch, ts=ts)
                dup = message(f"<@UBOT> status {tag} of the rollout?", user=user, channel=ch, ts=ts)
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
    rate = len(answered) / (t1 - t0)
    ack = summary_ms(window_acks)
    return {
        "conversations": conversations,
        "model_delay_s": MODEL["delay"],
        "window_s": round(t1 - t0, 2),
        "answered_in_window": len(answered),
        "answered_per_s": round(rate, 1),
        "ack": ack,
        "messages_sent": len(sent_tags),
        "events_sent": len(acks),
        "dropped": len(dropped),
        "answered_twice": len(twice),
        "errors": errors[:10],
        "error_count": len(errors),
        "cpu": cpu.per(len(answered)),
        "rss_mb": round(st.rss_mb(), 1),
        "service_log_problems": st.log_problems(),
        "goal": f">= {GOAL_RATE:g} answered/s, ack p99 <= {GOAL_ACK_P99_MS:g} ms, none dropped or "
        "answered twice",
        "met": rate >= GOAL_RATE
        and ack["p99_ms"] <= GOAL_ACK_P99_MS
        and not dropped
        and not twice
        and not errors,
    }


def render(d: dict) -> str:
    return table(
        f"Throughput: {d['conversations']} concurrent Slack conversations, model "
        f"{d['model_delay_s']:g} s per reply, {d['window_s']} s window (goal {d['goal']})",
        [
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
            "met",
        ],
        [
            [
                d["answered_per_s"],
                d["ack"]["p50_ms"],
                d["ack"]["p95_ms"],
                d["ack"]["p99_ms"],
                d["messages_sent"],
                d["dropped"],
                d["answered_twice"],
                d["error_count"],
                f"{d['cpu']['service_cpu_util']:.0%}",
                d["cpu"]["service_cpu_ms_per_msg"],
                "yes" if d["met"] else "NO",
            ]
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--window", type=float, default=20.0)
    a = p.parse_args(argv)
    if a.smoke:
        data = asyncio.run(run(50, 2.0, 3.0))
    else:
        data = asyncio.run(run(a.conversations, 8.0, a.window))
    data["smoke"] = a.smoke
    print(render(data))
    write("throughput", data)
    return data


if __name__ == "__main__":
    main()
