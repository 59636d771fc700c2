"""The Redis pool opens its connections up front, and opening one reads no package metadata."""

from __future__ import annotations

import asyncio
from importlib import metadata

import pytest

from bot.store.redis import RedisStore


@pytest.fixture
async def store(redis_url, key_prefix):
    s = RedisStore(redis_url, prefix=key_prefix, history_budget=1000, history_ttl=60)
    yield s
    await s.close()


def _pooled(store: RedisStore) -> int:
    pool = store.r.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)


async def test_warm_opens_connections_before_the_first_turn(store):
    await store.warm(16)
    assert _pooled(store) == 16
    await store.ping()  # a warm connection, not a new one
    assert _pooled(store) == 16


async def test_opening_connections_does_not_read_redis_py_metadata(store, monkeypatch):
    reads: list[str] = []
    real = metadata.version

    def counting(name: str) -> str:
        reads.append(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", counting)
    await asyncio.gather(*(store.ping() for _ in range(40)))  # a burst opens new connections
    assert _pooled(store) > 1
    assert reads == []


async def test_warm_with_redis_down_does_not_fail(redis_server):
    s = RedisStore(redis_server.url, prefix="tw-test-down:", history_budget=1000, history_ttl=60)
    redis_server.stop()
    try:
        await s.warm(4)
    finally:
        await s.close()
