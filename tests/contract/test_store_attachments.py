"""Both stores keep messages with attachments: parts round-trip, and trimming by tokens drops a
message with its parts as one, keeping a user message first (docs/spec.md §3)."""

from __future__ import annotations

from bot.attachments import Files
from bot.tokens import TokenCounter
from bot.trimming import StoredMessage
from tests.contract.test_store_contract import make  # noqa: F401  (the two-store fixture)

IMAGE_REF = {"type": "image_ref", "slot": 0, "sha": "ab", "name": "shot.png", "tokens": 765}
PDF = {"type": "text", "text": "[Attached PDF: a.pdf]\nTotal\t42\n[End of a.pdf]"}


async def commit(store, conv, messages):
    turn = await store.acquire(conv, None)
    return await store.commit(turn, messages, None)


async def test_parts_come_back_as_they_were_stored(make):  # noqa: F811
    store = make()
    with_files = StoredMessage("user", "see\tthese", 900, "Ann", parts=(IMAGE_REF, PDF))
    reply = StoredMessage("assistant", "done", 10)
    await commit(store, "c1", [with_files, reply])
    assert (await store.load("c1", 10_000, [])).history == [with_files, reply]


async def test_trimming_drops_a_message_and_its_attachments_together(make):  # noqa: F811
    store = make(history_budget=1000)
    big = StoredMessage("user", "look", 900, None, parts=(IMAGE_REF,))
    await commit(store, "c2", [big, StoredMessage("assistant", "a red square", 20)])
    dropped = await commit(
        store, "c2", [StoredMessage("user", "and?", 60), StoredMessage("assistant", "yes", 60)]
    )
    kept = await store.history("c2")
    assert dropped == 2 and [m.content for m in kept] == ["and?", "yes"]
    ctx = await store.load("c2", 120, [])
    assert ctx.history[0].role == "user"


async def test_image_slots_live_in_the_stores_cache(make):  # noqa: F811
    store = make()
    files = Files(TokenCounter(), store, max_bytes=10**6, images_enabled=True, history_ttl=60)
    ref = dict(IMAGE_REF, sha="s1")
    await store.cache_set("img:c3:0", "s1\tdata:image/png;base64,AAAA", 60)
    [restored] = await files.restore("c3", [StoredMessage("user", "x", 800, None, parts=(ref,))])
    assert restored.parts[0]["image_url"]["url"] == "data:image/png;base64,AAAA"
