"""`run_pipeline`: the store's pipelines, one round trip each, on one endpoint or a Cluster.

An op is `("script", script, keys, args)` or `(method, key or [keys], *args)`: its first key
says where it runs. On a Cluster the ops are split by the node serving them and each node's
share is sent as its own pipeline, all at once (`connect.pipeline_groups`), so an op on another
slot — usage, prompts, a new feature's keys — goes into the same list of ops and costs the
turn no extra round trip to wait for. This is the pattern for every per-turn pipeline across
slots: build one list of ops and call the store's `_pipeline` once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bot.store.connect import permit, pipeline_groups


def first_key(op: tuple) -> str:
    """The key an op works on (for a script: its first key; all its keys share a slot)."""
    key = op[2] if op[0] == "script" else op[1]
    return key if isinstance(key, str) else key[0]


async def run_pipeline(client: Any, ops: list[tuple]) -> list:
    """The ops' replies in the order of `ops`; a failed op's reply is its exception."""
    groups = pipeline_groups(client, [first_key(op) for op in ops])
    if len(groups) == 1:
        return await _on_one_node(client, ops)
    parts = await asyncio.gather(*(_on_one_node(client, [ops[i] for i in g]) for g in groups))
    res: list = [None] * len(ops)
    for group, part in zip(groups, parts, strict=True):
        for i, r in zip(group, part, strict=True):
            res[i] = r
    return res


def _queue(pipe: Any, op: tuple) -> None:
    if op[0] == "script":
        _, script, keys, args = op
        pipe.execute_command("EVALSHA", script.sha, len(keys), *keys, *args)
    elif op[0] in _blocked_on_cluster():
        # redis-py's cluster pipeline refuses multi-key commands (MGET, EVALSHA, ...) since
        # their keys could span slots; an op's keys never do, so it goes as the raw command
        # (the same on one endpoint), routed by its keys.
        args = (x for a in op[1:] for x in (a if isinstance(a, list | tuple) else (a,)))
        pipe.execute_command(op[0].upper(), *args)
    else:
        getattr(pipe, op[0])(*op[1:])


_BLOCKED: frozenset[str] | None = None


def _blocked_on_cluster() -> frozenset[str]:
    global _BLOCKED
    if _BLOCKED is None:
        from redis.cluster import PIPELINE_BLOCKED_COMMANDS

        _BLOCKED = frozenset(c.replace(" ", "_").lower() for c in PIPELINE_BLOCKED_COMMANDS)
    return _BLOCKED


async def _on_one_node(client: Any, ops: list[tuple]) -> list:
    """One pipeline to one node; scripts go as EVALSHA with no SCRIPT EXISTS probe.

    redis-py's pipelines ask SCRIPT EXISTS before every pipeline holding a script (an extra
    round trip); we send EVALSHA directly and, if Redis lost its script cache (a restart, or a
    replica promoted by a failover), load the scripts and re-run only those that failed.
    """
    from redis.exceptions import NoScriptError

    async with permit(client):
        res = await _send(client, ops)
        missing = [i for i, r in enumerate(res) if isinstance(r, NoScriptError)]
        if missing:
            for script in {ops[i][1] for i in missing}:
                await client.script_load(script.script)
            again = await _send(client, [ops[i] for i in missing])
            for i, r in zip(missing, again, strict=True):
                res[i] = r
    return res


async def _send(client: Any, ops: list[tuple]) -> list:
    from redis.exceptions import ConnectionError as RedisConnectionError

    for attempt in (1, 2):
        try:
            async with client.pipeline(transaction=False) as pipe:
                for op in ops:
                    _queue(pipe, op)
                return await pipe.execute(raise_on_error=False)
        except AttributeError as exc:
            # A redis-py cluster race during a failover: another task's error handling closes
            # every node's connections (`RedisCluster.aclose`) while this pipeline's connection
            # is still being opened, and the write meets a closed socket (`_writer` is None).
            # Nothing of this one-node pipeline was written, so sending it again is safe.
            if attempt == 2:
                raise RedisConnectionError(f"connection closed while opening: {exc}") from exc
            await asyncio.sleep(0.25)
    raise AssertionError("unreachable")
