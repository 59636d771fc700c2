"""The attachments variants of bench 3 (history cost) and bench 4 (Redis bytes per message).

Bench 3 variant: the same turn as bench 3's "ours" (load → fit → commit on the real Redis store)
with files in play. The stored history has every 10th user message carrying a PDF's text and a
screenshot (by reference, as `bot/attachments.py` stores them); each measured turn brings a new
1280×720 screenshot and a one-page PDF, so it also restores the stored images from their slots
(`Files.restore`) and moves the new one into a slot (`Files.keep`). Reading the files (Pillow,
pypdf, base64) is a fixed cost per turn whatever the history, reported apart.

Bench 4 variant: `MEMORY USAGE` of a history list of messages with parts (bytes per message
beyond their text, the image reference included), and of one image slot for a screenshot and
a shrunk photo: a conversation holds at most `IMAGES_KEPT` slots.
"""

from __future__ import annotations

import time
import uuid

import redis.asyncio as aioredis

from bench.common import REDIS_URL, table
from bot.attachments import IMAGES_KEPT, Files
from bot.messages import Attachment, IncomingMessage
from bot.store import RedisStore, encode_message
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage, fit_prompt, history_budget
from tests.support import files as samples

TOKEN_LIMIT = 16384
MAX_RESPONSE = 1024
USER_TEXT = "What does the error in this screenshot mean? "
REPLY_TEXT = "The dialog says the deployment could not reach the health endpoint ... " * 2
PDF_TEXT = "Runbook step: restart the replica and check the probe. " * 40


def _attachment(name: str, mime: str, data: bytes) -> Attachment:
    async def fetch(limit: int) -> bytes:
        return data

    return Attachment(name, mime, len(data), fetch)


def _message(i: int, *atts: Attachment) -> IncomingMessage:
    return IncomingMessage(
        platform="slack",
        workspace="T",
        channel="C",
        thread="1.1",
        user_id="U1",
        user_name="Ann",
        text=f"{USER_TEXT}({i})",
        message_id=f"m{i}",
        attachments=atts,
    )


def _screenshot(i: int) -> bytes:
    return samples.image("PNG", (1280, 720), color=(i % 256, 40, 90))


async def _seed(store: RedisStore, files: Files, counter: TokenCounter, conv: str, n: int) -> None:
    plain = StoredMessage("user", USER_TEXT, counter.message_tokens("user", USER_TEXT))
    reply = StoredMessage("assistant", REPLY_TEXT, counter.message_tokens("assistant", REPLY_TEXT))
    pdf = samples.pdf(PDF_TEXT)
    history: list[StoredMessage] = []
    batch: list[StoredMessage] = []
    for i in range(n):
        if i % 2:
            batch.append(reply)
        elif i % 20 == 0:
            shared = await files.read(
                _message(
                    i,
                    _attachment("shot.png", "image/png", _screenshot(i)),
                    _attachment("runbook.pdf", "application/pdf", pdf),
                )
            )
            live = StoredMessage(
                "user", USER_TEXT, plain.tokens + shared.tokens, None, parts=tuple(shared.parts)
            )
            kept = await files.keep(conv, history[-40:], live, shared)
            history.append(kept)
            batch.append(kept)
        else:
            batch.append(plain)
        if len(batch) >= 500:
            turn = await store.acquire(conv, None)
            await store.commit(turn, batch, None)
            batch = []
    if batch:
        turn = await store.acquire(conv, None)
        await store.commit(turn, batch, None)


async def _turn(store: RedisStore, files: Files, counter: TokenCounter, conv: str, i: int):
    t0 = time.process_time()
    msg = _message(
        i,
        _attachment("shot.png", "image/png", _screenshot(i)),
        _attachment("page.pdf", "application/pdf", samples.pdf("One page of notes.")),
    )
    shared = await files.read(msg)
    read_cpu = time.process_time() - t0
    turn = await store.acquire(conv, f"b{i}")
    user_tokens = await counter.amessage_tokens("user", msg.text)
    ceiling = history_budget(TOKEN_LIMIT, MAX_RESPONSE, 0, user_tokens + shared.tokens)
    ctx = await store.load(conv, ceiling, ["slack:T:C", "slack:T", "global"])
    system = StoredMessage("system", "You are helpful.", 8)
    shared = shared.within(TOKEN_LIMIT - MAX_RESPONSE - 3 - system.tokens - user_tokens)
    user = StoredMessage(
        "user", msg.text, user_tokens + shared.tokens, None, parts=tuple(shared.parts)
    )
    loaded = await files.restore(conv, ctx.history)
    prompt = fit_prompt(system, loaded, user, TOKEN_LIMIT, MAX_RESPONSE)
    assert prompt is not None
    [m.to_openai() for m in prompt]  # the request body's messages
    reply = StoredMessage("assistant", REPLY_TEXT, counter.message_tokens("assistant", REPLY_TEXT))
    user = await files.keep(conv, ctx.history, user, shared)
    await store.commit(turn, [user, reply], None)
    images = sum(1 for m in prompt for p in m.parts if p.get("type") == "image_url")
    return read_cpu, images


async def history(sizes: list[int], turns: int) -> dict:
    counter = TokenCounter("o200k_base")
    prefix = f"tw-bench-att-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(REDIS_URL, prefix=prefix, history_budget=10**9, history_ttl=3600)
    files = Files(counter, store, max_bytes=20_000_000, images_enabled=True, history_ttl=3600)
    r = aioredis.Redis.from_url(REDIS_URL)
    rows = []
    try:
        for n in sizes:
            conv = f"att-{n}"
            await _seed(store, files, counter, conv, n)
            await _turn(store, files, counter, conv, -1)  # warm-up
            cpu0, wall0, read = time.process_time(), time.perf_counter(), 0.0
            images = 0
            for i in range(turns):
                read_cpu, images = await _turn(store, files, counter, conv, i)
                read += read_cpu
            cpu = (time.process_time() - cpu0) / turns
            wall = (time.perf_counter() - wall0) / turns
            rows.append(
                {
                    "stored_messages": n,
                    "cpu_ms": round(cpu * 1000, 2),
                    "wall_ms": round(wall * 1000, 2),
                    "reading_files_cpu_ms": round(read / turns * 1000, 2),
                    "history_cpu_ms": round((cpu - read / turns) * 1000, 2),
                    "images_in_prompt": images,
                }
            )
    finally:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        await store.close()
    return {"turns": turns, "rows": rows}


def render_history(data: dict) -> str:
    return table(
        f"History cost per turn with attachments (a screenshot + a PDF each turn; every 10th "
        f"stored user message has both; {data['turns']} turns each)",
        ["stored msgs", "CPU ms", "wall ms", "of which reading files", "history part", "images"],
        [
            [
                r["stored_messages"],
                r["cpu_ms"],
                r["wall_ms"],
                r["reading_files_cpu_ms"],
                r["history_cpu_ms"],
                r["images_in_prompt"],
            ]
            for r in data["rows"]
        ],
    )


async def memory(redis_url: str) -> dict:
    counter = TokenCounter("o200k_base")
    prefix = f"tw-bench-attmem-{uuid.uuid4().hex[:8]}:"
    store = RedisStore(redis_url, prefix=prefix, history_budget=10**9, history_ttl=3600)
    files = Files(counter, store, max_bytes=20_000_000, images_enabled=True, history_ttl=3600)
    r = aioredis.Redis.from_url(redis_url)
    n = 200
    rows = []
    try:
        cases = {
            "image ref": [_attachment("shot.png", "image/png", _screenshot(1))],
            "PDF text (2,200 chars)": [
                _attachment("runbook.pdf", "application/pdf", samples.pdf(PDF_TEXT))
            ],
        }
        for label, atts in cases.items():
            conv = f"attmem-{label[:3]}"
            shared = await files.read(_message(0, *atts))
            live = StoredMessage("user", USER_TEXT, 500, "Person_1", parts=tuple(shared.parts))
            kept = await files.keep(conv, [], live, shared)
            turn = await store.acquire(conv, None)
            await store.commit(turn, [kept] * n, None)
            h = await r.memory_usage(store.keys.conversation(conv, "h"), samples=0)
            texts = len(USER_TEXT.encode()) + sum(
                len(p.get("text", "").encode()) for p in kept.parts
            )
            rows.append(
                {
                    "message": label,
                    "bytes_per_message": round(h / n, 1),
                    "beyond_text": round(h / n - texts, 1),
                    "encoded_bytes": len(encode_message(kept).encode()),
                }
            )
        slots = {}
        for label, data in (
            ("1280x720 screenshot PNG", _screenshot(7)),
            (
                "4000x3000 photo JPEG, flat (shrunk to 1024x768)",
                samples.image("JPEG", (4000, 3000)),
            ),
            (
                "4000x3000 random pixels JPEG (shrunk to 1024x768)",
                samples.noise("JPEG", (4000, 3000)),
            ),
            (
                "2048x768 random pixels PNG (kept size, re-encoded)",
                samples.noise("PNG", (2048, 768)),
            ),
        ):
            shared = await files.read(
                _message(0, _attachment("x", "image/png" if "PNG" in label else "image/jpeg", data))
            )
            live = StoredMessage("user", "x", 10, None, parts=tuple(shared.parts))
            conv = f"slot-{len(slots)}"
            kept = await files.keep(conv, [], live, shared)
            key = store.keys.cache(f"img:{conv}:{kept.parts[0]['slot']}")
            slots[label] = {
                "upload_bytes": len(data),
                "slot_bytes": await r.memory_usage(key, samples=0),
            }
    finally:
        keys = [k async for k in r.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await r.delete(*keys)
        await r.aclose()
        await store.close()
    return {"rows": rows, "image_slots": slots, "images_kept_per_conversation": IMAGES_KEPT}


def render_memory(data: dict) -> str:
    t1 = table(
        "Redis memory per stored message with attachments (MEMORY USAGE of the list / messages)",
        ["message", "bytes/message", "beyond its text", "encoded bytes"],
        [
            [r["message"], r["bytes_per_message"], r["beyond_text"], r["encoded_bytes"]]
            for r in data["rows"]
        ],
    )
    t2 = table(
        f"Image slots (at most {data['images_kept_per_conversation']} per conversation)",
        ["image", "upload bytes", "slot bytes in Redis"],
        [[k, v["upload_bytes"], v["slot_bytes"]] for k, v in data["image_slots"].items()],
    )
    return t1 + "\n" + t2
