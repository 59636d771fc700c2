"""Bench 9: answered msg/s with 1, 2 and 3 replicas, and with 1 and 2 workers per process.

Replicas are separate `threadwise serve` processes on their own ports sharing one Redis prefix
(as machines behind a load balancer would); workers are `serve --workers 2` on one port. 1,000
concurrent Slack conversations run a closed loop against a 1-second model: a mention, then
follow-ups in its thread, each sent when the previous reply is done. Every post is delivered
twice, to two different replicas (the mention as `app_mention` and as `message`, a follow-up
and its Slack retry), round-robin. After the window every message must have been answered
exactly once, and each thread's replies must be in the order its messages were sent.

    python -m bench scale_out                        # 1, 2, 3 replicas; 1 vs 2 workers
    python -m bench.scale_out --window 10 --conversations 500
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time
import uuid

import aiohttp

from bench.common import REDIS_URL, table, write
from bench.recorders import ModelClock, SlackRecorder
from bench.stack import SENDER_CONNECTIONS, cpu_seconds
from bench.tags import TAG, next_tag
from bench.throughput import MODEL
from bench.traffic import channel_id, followup, mention
from tests.support.fakes.fake_slack import (
    DEFAULT_SIGNING_SECRET,
    event_callback,
    message,
    new_ts,
    signed_headers,
)
from tests.support.helpers import ROOT, ServeProcess, delete_prefix

CONFIGS = [(1, 1), (2, 1), (3, 1), (1, 2)]  # (replicas, workers per replica)


async def _listening(svc: ServeProcess, workers: int, timeout: float = 120.0) -> list[int]:
    """The pids serving (the workers' once each logged "listening")."""
    deadline = time.monotonic() + timeout
    while True:
        recs = [json.loads(line) for line in svc.lines if line.startswith("{")]
        if workers == 1:
            return [svc.proc.pid]
        ready = {r.get("worker") for r in recs if r.get("msg") == "listening"}
        if len(ready) >= workers:
            return next(r["pids"] for r in recs if r.get("msg") == "workers started")
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not start:\n" + svc.output()[-2000:])
        await asyncio.sleep(0.1)


async def measure(replicas: int, workers: int, conversations: int, warmup: float, window: float):
    prefix = f"tw-bench-{uuid.uuid4().hex[:8]}:"
    users = {f"U{i:04d}": f"Person {i}" for i in range(1, 21)}
    model = await ModelClock(**MODEL).start()
    slack = await SlackRecorder(users=users).start()
    env = {
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": DEFAULT_SIGNING_SECRET,
        "SLACK_API_URL": slack.api_url,
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": "bench-key",
        "AZURE_OPENAI_DEPLOYMENT": "gpt-4o",
        "REDIS_URL": os.environ.get("THREADWISE_BENCH_REDIS", REDIS_URL),
        "REDIS_KEY_PREFIX": prefix,
        "LLM_MAX_RETRIES": "0",
        "PYTHONPATH": str(ROOT),
    }
    args = ("--workers", str(workers)) if workers > 1 else ()
    svcs = [ServeProcess(env, args=args, ready_timeout=120.0) for _ in range(replicas)]
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=SENDER_CONNECTIONS))
    try:
        for svc in svcs:
            await svc.start()
        pids = [pid for svc in svcs for pid in await _listening(svc, workers)]
        rr = itertools.count()
        sent: dict[tuple[str, str], list[str]] = {}
        done_at: list[float] = []
        errors: list[str] = []
        stop = asyncio.Event()

        async def post(ev: dict, svc: ServeProcess, event_id: str, retry: int | None) -> None:
            body = json.dumps(event_callback(ev, event_id=event_id))
            headers = signed_headers(body, DEFAULT_SIGNING_SECRET, retry_num=retry)
            async with http.post(svc.url + "/slack/events", data=body, headers=headers) as r:
                await r.read()
                if r.status != 200:
                    errors.append(f"HTTP {r.status}")

        async def conversation(i: int) -> None:
            await asyncio.sleep((i / conversations) * 1.0)  # staggered over the first second
            ch, root, user = channel_id(), new_ts(), f"U{(i % 20) + 1:04d}"
            tags = sent.setdefault((ch, root), [])
            while not stop.is_set():
                tag, at = next_tag(), new_ts()
                first, second = svcs[next(rr) % replicas], svcs[next(rr) % replicas]
                if replicas > 1 and first is second:
                    second = svcs[(svcs.index(first) + 1) % replicas]
                slack.replies.pop((ch, root), None)
                wait = slack.wait((ch, root))
                tags.append(tag)
                eid = f"Ev{uuid.uuid4().hex[:12]}"
                if len(tags) == 1:
                    text = f"status {tag} of the rollout?"
                    await asyncio.gather(
                        post(mention(text, user=user, channel=ch, ts=root), first, eid + "a", None),
                        post(
                            message(f"<@UBOT> {text}", user=user, channel=ch, ts=root),
                            second,
                            eid + "b",
                            None,
                        ),
                    )
                else:
                    ev = followup(f"and then {tag}?", user=user, channel=ch, ts=at, thread_ts=root)
                    await asyncio.gather(post(ev, first, eid, None), post(ev, second, eid, 1))
                try:
                    done_at.append(await asyncio.wait_for(wait, 120))
                except TimeoutError:
                    errors.append(f"no reply within 120 s to {tag}")
                    return

        tasks = [asyncio.create_task(conversation(i)) for i in range(conversations)]
        await asyncio.sleep(warmup)
        t0, cpu0 = time.monotonic(), sum(cpu_seconds(p) for p in pids)
        await asyncio.sleep(window)
        t1, cpu1 = time.monotonic(), sum(cpu_seconds(p) for p in pids)
        stop.set()
        await asyncio.gather(*tasks)
        await asyncio.sleep(1.5)  # anything answered twice would arrive now
        answered = sum(1 for t in done_at if t0 <= t < t1)
        counts = slack.reply_tags()
        all_tags = [t for tags in sent.values() for t in tags]
        out_of_order = 0
        unanswered: list[str] = []  # what those threads show instead (an apology, a notice)
        for (ch, root), tags in sent.items():
            shown = [
                f"[m{m}]"
                for msg in slack.thread(ch, root)
                if not msg.streaming
                for m in TAG.findall(msg.text)[:1]
            ]
            if shown != tags:
                out_of_order += 1
                unanswered += [
                    m.text[:80] for m in slack.thread(ch, root) if not TAG.search(m.text)
                ]
        return {
            "replicas": replicas,
            "workers": workers,
            "answered_per_s": round(answered / (t1 - t0), 1),
            "cpu_ms_per_answer": round((cpu1 - cpu0) / max(answered, 1) * 1000, 2),
            "messages_sent": len(all_tags),
            "lost": sum(1 for t in all_tags if counts.get(t, 0) == 0),
            "answered_twice": sum(1 for t in all_tags if counts.get(t, 0) > 1),
            "threads_out_of_order": out_of_order,
            "not_echoed": unanswered[:5],
            "errors": errors[:5],
            "error_count": len(errors),
        }
    finally:
        await http.close()
        for svc in svcs:
            await svc.stop(timeout=120)
        await model.stop()
        await slack.stop()
        await delete_prefix(env["REDIS_URL"], prefix)


def render(d: dict) -> str:
    return table(
        f"Scale-out: {d['conversations']} concurrent Slack conversations, model 1 s, every post "
        "delivered to two replicas",
        ["replicas", "workers", "answered/s", "CPU ms/answer", "sent", "lost", "twice", "order"],
        [
            [
                r["replicas"],
                r["workers"],
                r["answered_per_s"],
                r["cpu_ms_per_answer"],
                r["messages_sent"],
                r["lost"],
                r["answered_twice"],
                "kept" if r["threads_out_of_order"] == 0 else f"{r['threads_out_of_order']} off",
            ]
            for r in d["rows"]
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--warmup", type=float, default=6.0)
    p.add_argument("--window", type=float, default=15.0)
    a = p.parse_args(argv)
    configs = [(2, 1)] if a.smoke else CONFIGS
    n, warmup, window = (20, 2.0, 2.0) if a.smoke else (a.conversations, a.warmup, a.window)

    async def run() -> list[dict]:
        return [await measure(r, w, n, warmup, window) for r, w in configs]

    rows = asyncio.run(run())
    data = {
        "conversations": n,
        "rows": rows,
        "smoke": a.smoke,
        "clean": all(
            r["lost"] == 0 and r["answered_twice"] == 0 and r["threads_out_of_order"] == 0
            for r in rows
        ),
    }
    print(render(data))
    write("scale_out", data)
    return data


if __name__ == "__main__":
    main()
