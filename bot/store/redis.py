"""`RedisStore`: the store every replica shares.

The Lua scripts (`lua/*.lua`, package data) are what keep a turn at three round trips: the claim
dedupes, subscribes or checks the subscription, and queues for the lock in one script; `load`
fits history server-side; `commit` appends and trims in one script, pipelined with the usage
counters and the release.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from importlib import resources

from bot.store.base import ONCE_TTL_SECONDS, PENDING_KEEP, Store
from bot.store.codec import (
    Context,
    Summary,
    Usage,
    decode_message,
    encode_message,
)
from bot.store.connect import connect, drop_idle, ping
from bot.store.errors import NotSubscribed, StoreUnavailable
from bot.store.feedback_redis import RedisVotes
from bot.store.keys import Keys
from bot.store.locks import FifoLocks, Turn, start_renewal, stop_renewal
from bot.store.pipeline import run_pipeline
from bot.store.rights_redis import RIGHTS_SCRIPTS, RedisRights, commit_ops, load_ops, read_load
from bot.store.shared_redis import RedisShared
from bot.store.summary_redis import SUMMARY_SCRIPTS, RedisSummaries
from bot.trimming import StoredMessage

# Each script and the files it is made of: begin and try share the lock function.
SCRIPTS: dict[str, tuple[str, ...]] = {
    "begin": ("acquire", "begin"),
    "try": ("acquire", "try"),
    "renew": ("renew",),
    "release": ("release",),
    "load": ("load",),
    "append": ("append",),
    "prompt": ("prompt",),
    "count": ("count",),
    **SUMMARY_SCRIPTS,
    **RIGHTS_SCRIPTS,
}


def load_script(name: str) -> str:
    """The source of one script, read from the package's `lua/` files."""
    folder = resources.files("bot.store").joinpath("lua")
    return "".join(folder.joinpath(f"{part}.lua").read_text("utf-8") for part in SCRIPTS[name])


WARM_CONNECTIONS = 64  # opened at start-up (of 256 at most): a burst's first turns find them


class RedisStore(RedisRights, RedisSummaries, RedisVotes, RedisShared, Store):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "threadwise:",
        history_budget: int,
        history_ttl: int,
        lock_lease: float = 30.0,
        socket_timeout: float = 5.0,
        summaries: bool = False,
        cluster: bool = False,
        auth: str = "password",
        credential: object = None,
        retention=None,
    ) -> None:
        super().__init__(
            history_budget=history_budget,
            history_ttl=history_ttl,
            lock_lease=lock_lease,
            summaries=summaries,
            retention=retention,
        )
        import redis

        self._redis_errors: tuple[type[BaseException], ...] = (
            redis.RedisError,
            redis.exceptions.RedisClusterException,
            OSError,
            asyncio.TimeoutError,
        )
        self.keys = Keys(prefix)
        self._fifo = FifoLocks()
        # One endpoint or a Cluster, password or Entra token: `connect` (bot/store/connect.py).
        self.r = connect(
            url, cluster=cluster, auth=auth, credential=credential, socket_timeout=socket_timeout
        )
        script = {name: self.r.register_script(load_script(name)) for name in SCRIPTS}
        self._scripts = script
        self._begin = script["begin"]
        self._try = script["try"]
        self._renew_s = script["renew"]
        self._release = script["release"]
        self._load = script["load"]
        self._append = script["append"]
        self._prompt = script["prompt"]
        self._usage_script = script["count"]
        self.rights_script = {name: script[name] for name in RIGHTS_SCRIPTS}

    @contextlib.asynccontextmanager
    async def _guard(self):
        try:
            yield
        except self._redis_errors as exc:
            raise StoreUnavailable(f"Redis: {type(exc).__name__}: {exc}") from exc

    async def _again(self, call):
        """Run an idempotent call; if its pooled connection was dead, run it once more.

        When Redis restarts, every idle connection in the pool is dead and each would fail the
        first command given to it: the first such failure drops all idle connections, and the
        call is retried on a fresh one. A Redis that is really down fails the retry at once.
        """
        from redis.exceptions import ConnectionError as RedisConnectionError

        try:
            async with self._guard():
                return await call()
        except StoreUnavailable as exc:
            if not isinstance(exc.__cause__, RedisConnectionError | ConnectionError):
                raise
        with contextlib.suppress(Exception):
            await drop_idle(self.r)
        async with self._guard():
            return await call()

    # -- turns

    async def acquire(
        self,
        conversation: str,
        once_id: str | None,
        max_wait: float = 300.0,
        *,
        subscribe: bool = False,
        only_if_subscribed: bool = False,
    ) -> Turn | None:
        token = uuid.uuid4().hex
        lease_ms = int(self.lock_lease * 1000)
        k = self.keys
        q, lk = k.conversation(conversation, "q"), k.conversation(conversation, "l")
        once = k.once(conversation, once_id)
        started = time.monotonic()
        await self._fifo.acquire(conversation, max_wait)
        try:
            async with self._guard():
                got = await self._again(
                    lambda: self._begin(
                        keys=[once, q, lk, k.conversation(conversation, "a")],
                        args=[
                            ONCE_TTL_SECONDS if once_id else 0,
                            token,
                            lease_ms,
                            self.history_ttl if subscribe else 0,
                            1 if only_if_subscribed else 0,
                        ],
                    )
                )
                if got == -2:
                    raise NotSubscribed(conversation)  # the local FIFO is left below
                if got == -1:
                    self._fifo.release(conversation)
                    return None
                delay = 0.005
                try:
                    while got != 1:
                        if time.monotonic() - started > max_wait:
                            raise TimeoutError(f"waited {max_wait:.0f}s for conversation lock")
                        await asyncio.sleep(delay)
                        delay = min(delay * 1.5, 0.1)
                        got = await self._again(
                            lambda: self._try(keys=[q, lk], args=[token, lease_ms])
                        )
                except BaseException:
                    # Leave the queue now rather than block the thread until our lease ends.
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._release(keys=[q, lk], args=[token]))
                    raise
        except BaseException:
            self._fifo.release(conversation)
            raise
        turn = Turn(conversation, token, waited=time.monotonic() - started, local_held=True)
        start_renewal(turn, self.lock_lease, self._renew)
        return turn

    def _drop_local(self, turn: Turn) -> None:
        if turn.local_held:
            turn.local_held = False
            self._fifo.release(turn.conversation)

    async def _renew(self, turn: Turn) -> bool:
        k = self.keys
        q, lk = k.conversation(turn.conversation, "q"), k.conversation(turn.conversation, "l")
        lease_ms = int(self.lock_lease * 1000)
        return bool(
            await self._again(lambda: self._renew_s(keys=[q, lk], args=[turn.token, lease_ms]))
        )

    async def release(self, turn: Turn) -> None:
        if turn.released:
            return
        stop_renewal(turn)
        k = self.keys
        q, lk = k.conversation(turn.conversation, "q"), k.conversation(turn.conversation, "l")
        try:
            await self._again(lambda: self._release(keys=[q, lk], args=[turn.token]))
        finally:
            self._drop_local(turn)

    async def _pipeline(self, ops: list[tuple]) -> list:
        """Run ops in one round trip (per node on a Cluster): see `bot/store/pipeline.py`."""
        async with self._guard():
            res = await run_pipeline(self.r, ops)
        for r in res:
            if isinstance(r, Exception):
                raise StoreUnavailable(f"Redis: {type(r).__name__}: {r}") from r
        return res

    async def load(self, conversation, budget, prompt_scopes, meter=None, *, redactions=False):
        history_key = self.keys.conversation(conversation, "h")
        ops: list[tuple] = [("script", self._load, [history_key], [max(budget, 0)])]
        if prompt_scopes:
            ops.append(("mget", [self.keys.prompt(s) for s in prompt_scopes]))
        n = len(ops)  # then budgets, rate and placeholders: the same round trip
        ops += load_ops(self, conversation, meter, redactions)
        m = len(ops)  # then, with summaries on, the history's length, summary and pending
        if self.summaries:
            c = self.keys.conversation
            ops += [
                ("llen", history_key),
                ("get", c(conversation, "s")),
                ("llen", c(conversation, "sp")),
            ]
        res = await self._again(lambda: self._pipeline(ops))
        history = [decode_message(x) for x in res[0]]
        prompts = dict(zip(prompt_scopes, res[1], strict=True)) if prompt_scopes else {}
        reading, placeholders = read_load(meter, redactions, res[n:m])
        if not self.summaries:
            return Context(history, prompts, reading, placeholders)
        stored, summary, pending = res[m : m + 3]
        return Context(
            history,
            prompts,
            reading,
            placeholders,
            Summary.decode(summary),
            int(stored),
            int(pending),
        )

    async def commit(
        self,
        turn: Turn,
        messages: Sequence[StoredMessage],
        usage: Usage | None,
        record=None,
        *,
        fold: int = 0,
    ) -> int:
        stop_renewal(turn)
        try:
            return await self._commit(turn, messages, usage, record, fold)
        except StoreUnavailable:
            # The pipeline (or the release in it) failed — e.g. a cluster failover closed its
            # connection: free the lock now (idempotent) rather than after the lease.
            k, conv = self.keys, turn.conversation
            lock = [k.conversation(conv, "q"), k.conversation(conv, "l")]
            with contextlib.suppress(Exception):
                await self._again(lambda: self._release(keys=lock, args=[turn.token]))
            raise
        finally:
            self._drop_local(turn)

    async def _commit(
        self,
        turn: Turn,
        messages: Sequence[StoredMessage],
        usage: Usage | None,
        record=None,
        fold: int = 0,
    ) -> int:
        conv, k = turn.conversation, self.keys
        keep = self.summaries
        ops: list[tuple] = [
            (
                "script",
                self._append,
                [k.conversation(conv, "h"), k.conversation(conv, "t"), k.conversation(conv, "sp")],
                [
                    self.history_budget,
                    self.history_ttl,
                    1 if keep else 0,
                    fold if keep else 0,
                    PENDING_KEEP,
                    *(encode_message(m) for m in messages),
                ],
            ),
            ("set", k.conversation(conv, "a"), "1", self.history_ttl),
        ]
        if usage is not None:
            ops.append(self.usage_op(usage))
        if messages:
            ops += commit_ops(self, conv, record)
        ops.append(
            (
                "script",
                self._release,
                [k.conversation(conv, "q"), k.conversation(conv, "l")],
                [turn.token],
            )
        )
        res = await self._pipeline(ops)
        return int(res[0])

    async def clear(self, conversation: str) -> None:
        k = self.keys
        async with self._guard():
            await self.r.delete(
                *(k.conversation(conversation, p) for p in ("h", "t", "r", "sp", "s", "sl"))
            )

    async def subscribe(self, conversation: str) -> None:
        async with self._guard():
            await self.r.set(self.keys.conversation(conversation, "a"), "1", ex=self.history_ttl)

    async def is_subscribed(self, conversation: str) -> bool:
        key = self.keys.conversation(conversation, "a")
        return bool(await self._again(lambda: self.r.exists(key)))

    async def history(self, conversation: str) -> list[StoredMessage]:
        async with self._guard():
            raw = await self.r.lrange(self.keys.conversation(conversation, "h"), 0, -1)
        return [decode_message(x) for x in raw]

    # -- lifecycle

    async def warm(self, connections: int = WARM_CONNECTIONS) -> None:
        """Open `connections` of the pool's connections now, at start-up, rather than in the
        first burst of turns (each open is a connect and a CLIENT SETINFO round trip).
        Best effort: a Redis that is down is reported by readiness, not here. A Cluster client
        opens its nodes' connections as it first uses them."""
        pool = getattr(self.r, "connection_pool", None)
        if pool is None:
            return
        opened = []
        try:
            async with asyncio.timeout(10):
                for conn in await asyncio.gather(
                    *(pool.get_connection() for _ in range(connections)), return_exceptions=True
                ):
                    if isinstance(conn, BaseException):
                        continue
                    opened.append(conn)
        except TimeoutError:
            pass
        finally:
            for conn in opened:
                await pool.release(conn)

    async def ping(self) -> None:
        await self._again(lambda: ping(self.r))

    async def eviction_policy(self) -> str | None:
        # INFO first: managed Redis (Azure Managed Redis among them) usually refuses CONFIG but
        # answers INFO, whose memory section carries the same policy.
        from redis.exceptions import ResponseError

        async with self._guard():
            try:
                policy = (await self.r.info("memory")).get("maxmemory_policy")
                if policy:
                    return str(policy)
            except ResponseError:
                pass
            try:
                return (await self.r.config_get("maxmemory-policy")).get("maxmemory-policy")
            except ResponseError:
                return None

    async def close(self) -> None:
        await self.r.aclose()
