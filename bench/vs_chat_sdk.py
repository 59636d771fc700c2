"""Bench 11: one Threadwise process side by side with Vercel's Chat SDK on the same load.

Both bots run as their own process against the same fakes (a 1-second Azure OpenAI model, the
Slack Web API) and the same Redis, one after the other, and take bench 2's capacity load:
1,000 concurrent Slack conversations in a closed loop, each a mention (delivered twice, as
`app_mention` and as `message`) followed by follow-ups in its thread, each sent as soon as the
previous reply is done. Measured for each: answered messages per second, the bot process's CPU
per answer, and that every message was answered exactly once.

Threadwise runs with `MODEL_MAX_CONCURRENCY` at the number of conversations: its default, 256
model calls in flight per process (a bound that keeps a process within 1,024 open files), caps
one process at about 240 answers/s with a 1-second model, whatever its CPU could do; the Chat
SDK has no such bound. A third run per round, at the default, shows that cap.

The runs alternate (`--rounds`), so a noisy minute on a shared machine hits each bot, and the
ratios are of the medians: on this shared VM one configuration's CPU per answer moves by a
third from one minute to the next.

The Chat SDK bot (`bench/chat_sdk/bot.mjs`) is the AI mention bot its documentation describes:
the SDK's Redis state (dedupe, thread locks, subscriptions), the AI SDK's `streamText` into
`thread.post`, Slack's native streaming. Its pinned packages are installed from the npm
registry into `bench/results/chat_sdk/` on first use (`npm ci`; nothing of it is committed but
the bot, its package.json and its lock). Goal for Threadwise: ≥ 1.5× the Chat SDK's answered/s
at ≤ 0.6× its CPU per answer.

    python -m bench vs_chat_sdk
    python -m bench.vs_chat_sdk --rounds 5 --window 20     # more rounds, longer windows
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import statistics
import subprocess
from pathlib import Path

from bench.common import RESULTS, table, write
from bench.stack import running_stack
from bench.throughput import MODEL, phase

BOT_DIR = Path(__file__).with_name("chat_sdk")
BOT_FILES = ("bot.mjs", "package.json", "package-lock.json")
GOAL_RATE_RATIO, GOAL_CPU_RATIO = 1.5, 0.6


def chat_sdk_command() -> tuple[str, ...]:
    """`node bot.mjs` from an install of the pinned packages (made once per lock file)."""
    digest = hashlib.sha256(b"".join((BOT_DIR / f).read_bytes() for f in BOT_FILES)).hexdigest()
    home = RESULTS / "chat_sdk" / digest[:12]
    if not (home / "node_modules").is_dir():
        node, npm = shutil.which("node"), shutil.which("npm")
        if not node or not npm:
            raise SystemExit("bench vs_chat_sdk needs Node.js and npm on PATH")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        for f in BOT_FILES:
            shutil.copy(BOT_DIR / f, home / f)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=home, check=True
        )
    return (shutil.which("node") or "node", str(home / "bot.mjs"))


BOTS = ("threadwise", "chat_sdk", "threadwise_default_cap")


async def measure(bot: str, conversations: int, warmup: float, window: float) -> dict:
    command = chat_sdk_command() if bot == "chat_sdk" else None
    env = {} if bot == "threadwise_default_cap" else {"MODEL_MAX_CONCURRENCY": str(conversations)}
    async with running_stack(model=MODEL, command=command, env=env) as st:
        p = await phase(st, conversations, warmup, window, None)
        answered = max(p["messages_sent"], 1)  # every one was answered when the run is clean
        p["slack_calls_per_answer"] = {
            m: round(n / answered, 2) for m, n in sorted(st.slack.method_counts.items())
        }
        p["bot"] = bot
        p["rss_mb"] = round(st.rss_mb(), 1)
        p["log_problems"] = st.log_problems()
        p["log_tail"] = st.svc.lines[-5:] if bot == "chat_sdk" else []
        p["env"] = env
    return p


def _clean(p: dict) -> bool:
    return p["dropped"] == 0 and p["answered_twice"] == 0 and p["error_count"] == 0


def median(rs: list[dict], key) -> float:
    return statistics.median(key(p) for p in rs)


def rate(p: dict) -> float:
    return p["answered_per_s"]


def cpu(p: dict) -> float:
    return p["cpu"]["service_cpu_ms_per_msg"]


async def run(conversations: int, warmup: float, window: float, rounds: int) -> dict:
    runs: dict[str, list[dict]] = {bot: [] for bot in BOTS}
    for _ in range(rounds):
        for bot in BOTS:
            runs[bot].append(await measure(bot, conversations, warmup, window))
    medians = {
        bot: {"answered_per_s": median(rs, rate), "cpu_ms_per_answer": median(rs, cpu)}
        for bot, rs in runs.items()
    }
    tw, cs = medians["threadwise"], medians["chat_sdk"]
    rate_ratio = tw["answered_per_s"] / max(cs["answered_per_s"], 1e-9)
    cpu_ratio = tw["cpu_ms_per_answer"] / max(cs["cpu_ms_per_answer"], 1e-9)
    default_cap = medians["threadwise_default_cap"]["answered_per_s"]
    return {
        "conversations": conversations,
        "model_delay_s": MODEL["delay"],
        "window_s": window,
        "rounds": rounds,
        "runs": runs,
        "medians": medians,
        "rate_ratio": round(rate_ratio, 2),
        "cpu_ratio": round(cpu_ratio, 2),
        "rate_ratio_at_default_cap": round(default_cap / max(cs["answered_per_s"], 1e-9), 2),
        "goal": f"answered/s >= {GOAL_RATE_RATIO:g}x the Chat SDK's, CPU per answer <= "
        f"{GOAL_CPU_RATIO:g}x, both answering every message exactly once",
        "met": rate_ratio >= GOAL_RATE_RATIO
        and cpu_ratio <= GOAL_CPU_RATIO
        and all(_clean(p) for rs in runs.values() for p in rs),
    }


def render(d: dict) -> str:
    rows = []
    for bot, rs in d["runs"].items():
        for i, p in enumerate(rs, 1):
            rows.append(
                [
                    bot,
                    i,
                    p["answered_per_s"],
                    p["cpu"]["service_cpu_ms_per_msg"],
                    f"{p['cpu']['service_cpu_util']:.0%}",
                    f"{p['cpu']['other_cpu_util']:.0%}",
                    p["rss_mb"],
                    p["messages_sent"],
                    p["dropped"],
                    p["answered_twice"],
                    p["error_count"],
                ]
            )
    return table(
        f"Threadwise vs Chat SDK: {d['conversations']} concurrent Slack conversations, model "
        f"{d['model_delay_s']:g} s; medians: answered/s {d['rate_ratio']}x, CPU per answer "
        f"{d['cpu_ratio']}x; at the default MODEL_MAX_CONCURRENCY answered/s "
        f"{d['rate_ratio_at_default_cap']}x (goal {d['goal']}; met: {'yes' if d['met'] else 'NO'})",
        [
            "bot",
            "run",
            "answered/s",
            "CPU ms/answer",
            "bot CPU",
            "other CPU",
            "RSS MB",
            "sent",
            "dropped",
            "twice",
            "errors",
        ],
        rows,
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--window", type=float, default=15.0)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args(argv)
    if a.smoke:
        data = asyncio.run(run(50, 1.5, 2.0, 1))
    else:
        data = asyncio.run(run(a.conversations, 6.0, a.window, a.rounds))
    data["smoke"] = a.smoke
    print(render(data))
    write("vs_chat_sdk", data)
    return data


if __name__ == "__main__":
    main()
