"""Redis keys: no id can make another id's key or break out of its conversation's hash tag.

The keys of ordinary ids (Slack, Teams, the Emulator, the console) must stay exactly what they
were, so history, prompts and usage stored before the escaping keep being found.
"""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from bot.store import MemoryStore, RedisStore
from bot.store.keys import Keys
from bot.trimming import StoredMessage

PREFIX = "threadwise:"
PARTS = ("h", "t", "a", "q", "l")


def keys_of(prefix: str = PREFIX) -> Keys:
    return Keys(prefix)


def key_of(store: Keys, address: tuple) -> str:
    kind, *ids = address
    if kind == "conv":
        return store.conversation(ids[0], ids[1])
    if kind == "once":
        return store.once(ids[0], ids[1])
    return {
        "prompt": store.prompt,
        "audit": store.audit,
        "usage": store.usage,
        "cache": store.cache,
    }[kind](ids[0])


def hash_tag(key: str) -> str | None:
    """What Redis Cluster hashes: the text between the first `{` and the next `}`, if any."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else None


# -- today's keys are kept --------------------------------------------------------------------

SLACK_CONV = "slack:T0123ABCD:C0456EFGH:1700000000.000100"
TEAMS_CHANNEL = (
    "teams:72f988bf-86f1-41af-91ab-2d7cd011db47:"
    "19:a1b2c3d4e5f6@thread.tacv2;messageid=1700000000000"
)
TEAMS_PERSONAL = "teams:72f988bf-86f1-41af-91ab-2d7cd011db47:a:1Xy-Zw_9AbCdEfGhIjKlMnOpQ"
EMULATOR = "teams:anonymous:8a3e41f0-5c2b-11ee-8c99-0242ac120002|livechat"


@pytest.mark.parametrize("conv", [SLACK_CONV, TEAMS_CHANNEL, TEAMS_PERSONAL, EMULATOR, "console:x"])
def test_ordinary_conversation_ids_keep_exactly_the_keys_they_had(conv):
    store = keys_of()
    for part in PARTS:
        assert store.conversation(conv, part) == f"threadwise:{{{conv}}}:{part}"
    for post in ("1700000000.000100", "1700000000000", "f:1234567890", "abc|0000003"):
        assert store.once(conv, post) == f"threadwise:{{{conv}}}:o:{post}"
    assert store.once(conv, None) == f"threadwise:{{{conv}}}:o"


@pytest.mark.parametrize(
    "scope",
    ["global", "slack:T0123ABCD", "slack:T0123ABCD:C0456EFGH", TEAMS_CHANNEL.rsplit(";", 1)[0]],
)
def test_ordinary_scopes_days_and_cache_keys_keep_exactly_the_keys_they_had(scope):
    store = keys_of()
    assert store.prompt(scope) == f"threadwise:{{prompts}}:{scope}"
    assert store.audit(scope) == f"threadwise:{{prompts}}:audit:{scope}"
    assert store.usage("2025-06-30") == "threadwise:{usage}:2025-06-30"
    for key in ("slack:user:T0123ABCD:U0789IJKL", f"teams:welcomed:{TEAMS_CHANNEL[6:]}"):
        assert store.cache(key) == f"threadwise:cache:{{{key}}}"


# -- no collisions, one hash tag per conversation ---------------------------------------------

# Mostly the characters that delimit keys, a few reserved words and letters between them.
ids = st.lists(
    st.sampled_from(["{", "}", ":", "|", "%", "%7D", "%25", "a", "h", "o", "o:", "audit:"])
    | st.sampled_from(["prompts", "usage", "cache:", "{prompts}", "q}:h", "teams:t:c"]),
    min_size=1,
    max_size=8,
).map("".join)
addresses = st.one_of(
    st.tuples(st.just("conv"), ids, st.sampled_from(PARTS)),
    st.tuples(st.just("once"), ids, ids | st.none()),
    st.tuples(st.sampled_from(["prompt", "audit", "usage", "cache"]), ids),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(addresses, min_size=2, max_size=12, unique=True))
def test_distinct_ids_never_share_a_key(batch):
    store = keys_of()
    keys = [key_of(store, a) for a in batch]
    assert len(set(keys)) == len(batch), dict(zip(keys, batch, strict=True))


@settings(max_examples=300, deadline=None)
@given(ids, st.lists(ids, max_size=4))
def test_every_key_of_a_conversation_has_its_one_hash_tag(conv, posts):
    store = keys_of()
    keys = [store.conversation(conv, p) for p in PARTS] + [
        store.once(conv, p) for p in [None, *posts]
    ]
    tags = {hash_tag(k) for k in keys}
    assert len(tags) == 1 and None not in tags, keys
    assert len({key_slot(k.encode()) for k in keys}) == 1


@given(ids)
def test_cache_keys_keep_their_hash_tag_whole(key):
    assert hash_tag(keys_of().cache(key)) is not None
    assert keys_of().cache(key).endswith("}")


def test_a_prefix_with_a_brace_is_refused():
    with pytest.raises(ValueError, match="REDIS_KEY_PREFIX"):
        keys_of("tw{x}:")
    with pytest.raises(ValueError, match="REDIS_KEY_PREFIX"):  # before any connection is made
        RedisStore("redis://127.0.0.1:9/0", prefix="tw{x}:", history_budget=100, history_ttl=60)


def test_an_empty_conversation_key_is_refused():
    with pytest.raises(ValueError, match="empty conversation"):
        keys_of().conversation("", "h")


# -- the collision the review found, on a real Redis ------------------------------------------


async def test_a_post_id_with_a_brace_does_not_reach_another_conversations_history(
    redis_url, key_prefix
):
    # Before: `{teams:t:c}:o:q}:h` was both the marker of post `q}:h` in `teams:t:c` and the
    # history of conversation `teams:t:c}:o:q`: the claim failed (WRONGTYPE) or hit history.
    store = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    other = "teams:t:c}:o:q"
    try:
        turn = await store.acquire(other, "m1")
        assert turn is not None
        said = [StoredMessage("user", "hi", 5), StoredMessage("assistant", "yo", 5)]
        await store.commit(turn, said, None)

        turn = await store.acquire("teams:t:c", "q}:h")
        assert turn is not None, "a new post was taken for a duplicate"
        await store.release(turn)
        assert [m.content for m in await store.history(other)] == ["hi", "yo"]
        assert await store.acquire("teams:t:c", "q}:h") is None  # the marker is its own key

        r = aioredis.Redis.from_url(redis_url, decode_responses=True)
        try:
            keys = {k async for k in r.scan_iter(match=f"{key_prefix}*")}
        finally:
            await r.aclose()
        assert f"{key_prefix}{{teams:t:c%7D:o:q}}:h" in keys
        assert f"{key_prefix}{{teams:t:c}}:o:q%7D:h" in keys
    finally:
        await store.close()


async def test_the_in_process_store_tells_posts_apart_whatever_their_ids_contain():
    # Before: the marker was "<conversation>|<post>", so ("a|b", "c") and ("a", "b|c") met.
    store = MemoryStore(history_budget=100, history_ttl=60)
    first = await store.acquire("slack:a|b", "c")
    assert first is not None
    await store.release(first)
    second = await store.acquire("slack:a", "b|c")
    assert second is not None, "a different post was dropped as a duplicate"
    await store.release(second)
