"""Bench 3: per-turn cost of loading, trimming and storing vs. the stored history's length.

Ours: token counts stored beside each message, history read backwards only as far as the
budget allows, append+trim in one Lua script. Naive: the seed document's loop — fetch the whole
history, re-count every message with tiktoken, drop the oldest until it fits — on the same Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import redis.asyncio as aioredis

from bench import attachments_cost
from bench.common import REDIS_URL, table, write
from bot.store import RedisStore
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, fit_prompt, history_budget

TOKEN_LIMIT = 16384
MAX_RESPONSE = 1024
USER_TEXT = "Could you explain how the deployment pipeline handles a failed health probe? "
REPLY_TEXT = "Sure. When the probe fails, the orchestrator restarts the replica and ... " * 2


async def seed(store: RedisStore, conv: str, n: int, counter: TokenCounter) -> None:
    u = StoredMessage("user", USER_TEXT, counter.message_tokens("user", USER_TEXT))
    a = StoredMessage("assistant", REPLY_TEXT, counter.message_tokens("assistant", REPLY_TEXT))
    batch = 500
    for start in range(0, n, batch):
        msgs = [u if (start + i) % 2 == 0 else a for i in range(min(batch, n - start))]
        turn = await store.acquire(conv, None)
        await store.commit(turn, msgs, None)


async def our_turn(store: RedisStore, counter: TokenCounter, conv: str, i: int) -> None:
    turn = await store.acquire(conv, f"b{i}")
    text = f"{USER_TEXT} ({i})"
    user = StoredMessage("user", text, await counter.amessage_tokens("user", text))
    ceiling = history_budget(TOKEN_LIMIT, MAX_RESPONSE, 0, user.tokens)
    ctx = await store.load(conv, ceiling, ["slack:T:C", "slack:T", "global"])
    system = StoredMessage(
        "system", "You are helpful.", counter.message_tokens("system", "You are helpful.")
    )
    prompt = fit_prompt(system, ctx.history, user, TOKEN_LIMIT, MAX_RESPONSE)
    assert prompt is not None
    reply = StoredMessage(
        "assistant", REPLY_TEXT, await counter.amessage_tokens("assistant", REPLY_TEXT)
    )
    await store.commit(turn, [user, reply], None)


async def naive_turn(r: aioredis.Redis, counter: TokenCounter, key: str, i: int) -> None:
    """The seed document's approach: re-count the whole history every turn."""
    raw = await r.lrange(key, 0, -1)
    history = [json.loads(x) for x in raw]
    text = f"{USER_TEXT} ({i})"
    messages = [
        {"role": "system", "content": "You are helpful."},
        *history,
        {"role": "user", "content": text},
    ]

    def count(msgs):
        n = 3
        for m in msgs:
            n += 3
            for k, v in m.items():
                n += counter.count(v) if len(v) <= 512 else len(counter._enc.encode(v))
                if k == "name":
                    n += 1
        return n

    while count(messages) + MAX_RESPONSE > TOKEN_LIMIT and len(messages) > 2:
        messages.pop(1)
    await r.rpush(
        key,
        json.dumps({"role": "user", "content": text}),
        json.dumps({"role": "assistant", "content": REPLY_TEXT}),
    )


async def redis_cpu(r: aioredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(sizes: list[int], turns: int) -> dict:
    counter = TokenCounter("o200k_base")
    prefix = f"tw-bench-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(REDIS_URL, prefix=prefix, history_budget=10**9, history_ttl=3600)
    r = aioredis.Redis.from_url(REDIS_URL, decode_responses=True)
    rows = []
    try:
        for n in sizes:
            conv = f"hist-{n}"
            await seed(store, conv, n, counter)
            naive_key = f"{prefix}naive:{n}"
            u = json.dumps({"role": "user", "content": USER_TEXT})
            a = json.dumps({"role": "assistant", "content": REPLY_TEXT})
            for start in range(0, n, 1000):
                await r.rpush(
                    naive_key,
                    *[u if (start + k) % 2 == 0 else a for k in range(min(1000, n - start))],
                )
            res = {}
            for name, fn in (
                ("ours", lambda i, conv=conv: our_turn(store, counter, conv, i)),
                ("naive", lambda i, key=naive_key: naive_turn(r, counter, key, i)),
            ):
                # The naive turn takes seconds on long histories: a few samples suffice.
                k = turns if name == "ours" or n <= 1000 else min(turns, 2)
                if name == "ours" or n <= 1000:
                    await fn(-1)  # warm-up
                cpu0, wall0, rcpu0 = time.process_time(), time.perf_counter(), await redis_cpu(r)
                for i in range(k):
                    await fn(i)
                cpu = (time.process_time() - cpu0) / k
                wall = (time.perf_counter() - wall0) / k
                rcpu = (await redis_cpu(r) - rcpu0) / k
                res[name] = {
                    "cpu_ms": round(cpu * 1000, 3),
                    "wall_ms": round(wall * 1000, 3),
                    "redis_cpu_ms": round(rcpu * 1000, 3),
                }
            rows.append({"stored_messages": n, **res})
    finally:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        await store.close()
    base = rows[0]["ours"]["cpu_ms"]
    for row in rows:
        row["ours_vs_smallest"] = round(row["ours"]["cpu_ms"] / base, 2)
        row["naive_vs_ours"] = round(row["naive"]["cpu_ms"] / row["ours"]["cpu_ms"], 1)
    return {"token_limit": TOKEN_LIMIT, "turns": turns, "rows": rows}


def render(data: dict) -> str:
    return table(
        f"History cost per turn (TOKEN_LIMIT {data['token_limit']}, {data['turns']} turns each)",
        [
            "stored msgs",
            "ours CPU ms",
            "ours wall ms",
            "Redis CPU ms",
            "naive CPU ms",
            "naive wall ms",
            "ours n/smallest",
            "naive/ours",
        ],
        [
            [
                r["stored_messages"],
                r["ours"]["cpu_ms"],
                r["ours"]["wall_ms"],
                r["ours"]["redis_cpu_ms"],
                r["naive"]["cpu_ms"],
                r["naive"]["wall_ms"],
                f"{r['ours_vs_smallest']}x",
                f"{r['naive_vs_ours']}x",
            ]
            for r in data["rows"]
        ],
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--smoke", action="store_true")
    a = p.parse_args(argv)
    data = asyncio.run(run([10, 200] if a.smoke else [10, 1000, 10000], 3 if a.smoke else 30))
    print(render(data))
    sizes = [10, 200] if a.smoke else [10, 1000, 10000]
    data["attachments"] = asyncio.run(attachments_cost.history(sizes, 2 if a.smoke else 10))
    print(attachments_cost.render_history(data["attachments"]))
    write("history_cost", data)
    return data


if __name__ == "__main__":
    main()
