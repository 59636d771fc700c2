"""All state behind one interface: history, locks, exactly-once markers, prompts, usage, cache.

Two implementations share one contract (and one contract test suite): `RedisStore` for real
deployments (every replica shares it) and `MemoryStore` for `threadwise chat` with no Redis.

Redis layout (P = REDIS_KEY_PREFIX; `{…}` is a Cluster hash tag, so one conversation's keys and
its scripts live on one shard):

    P{<conv>}:h      list   history, oldest first; items "tokens\\trole\\tname\\tcontent"
    P{<conv>}:t      string running token total of :h (so trimming never rescans the list)
    P{<conv>}:a      string "the bot answers this thread" (follow-ups without a mention)
    P{<conv>}:o:<id> string exactly-once marker of one post
    P{<conv>}:q, :l  list + hash  FIFO lock queue and the lease deadline of each waiter
    P{prompts}:<scope>        string  the system prompt of a scope
    P{prompts}:audit:<scope>  list    newest-first JSON audit records
    P{usage}:<YYYY-MM-DD>     hash    token and reply counters per workspace/channel/user
    Pcache:{<key>}            string  small adapter cache (user names)

Every id is escaped before it goes into a key (`_esc`, used by every key builder), so no
conversation, post, scope, day or cache key can produce another one's key or break out of the
`{…}` hash tag. Only `%`, `{` and `}` are percent-encoded: a hash tag ends at its first `}`,
so with none left inside, the tag is exactly the escaped conversation and everything after it
is that conversation's; `%` is encoded so the escaping can be undone (it is injective). `:`
and `|` are left alone: the tag is delimited by braces, not colons, and what follows it has a
fixed shape (`:h`, `:o:<id>`, …), so colons cannot shift a boundary — and the conversation
keys of Teams (`teams:<tenant>:19:…;messageid=…`) and of the Bot Framework Emulator
(`…|livechat`) stay exactly what they were, so stored history, prompts and usage keep working.
Two words would still be ambiguous and get their first letter encoded: a conversation named
`prompts` or `usage` (the shared tags) and a scope starting `audit:` (the audit lists). Real
ids never take either form, so no existing key changes. (The usage hash fields
`<w|c|u>|<id>|<counter>` need no escaping: the kind is the first letter and the counter the
last segment, so the id between them is recovered whatever `|` it holds.)

A turn costs three round trips when nobody else holds the conversation: `acquire` (dedupe +
lock in one script), `load` (fitted history + scoped prompts, one pipeline), `commit` (append +
trim + usage + release, one pipeline).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from bot.trimming import StoredMessage, fit_newest

log = logging.getLogger("threadwise.store")

ONCE_TTL_SECONDS = 24 * 3600
USAGE_TTL_SECONDS = 35 * 24 * 3600
AUDIT_KEEP = 100


class StoreUnavailable(Exception):
    """The store cannot be reached; the responder turns this into a short apology."""


class NotActive(Exception):
    """`acquire(..., require_active=True)` for a thread the bot does not answer."""


def encode_message(msg: StoredMessage) -> str:
    return f"{msg.tokens}\t{msg.role}\t{msg.name or ''}\t{msg.content}"


def decode_message(raw: str | bytes) -> StoredMessage:
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    tokens, role, name, content = raw.split("\t", 3)
    return StoredMessage(role=role, content=content, tokens=int(tokens), name=name or None)


@dataclass(frozen=True, slots=True)
class Usage:
    """One reply's usage, attributed to its workspace, channel and user (SPEC §4)."""

    workspace: str  # "slack:T1"
    channel: str  # "slack:T1:C1"
    user: str  # "slack:T1:U1"
    prompt_tokens: int
    completion_tokens: int
    day: str = field(default_factory=lambda: time.strftime("%Y-%m-%d", time.gmtime()))

    def fields(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for dim in (f"w|{self.workspace}", f"c|{self.channel}", f"u|{self.user}"):
            out[f"{dim}|prompt"] = self.prompt_tokens
            out[f"{dim}|completion"] = self.completion_tokens
            out[f"{dim}|replies"] = 1
        return out


@dataclass(frozen=True, slots=True)
class UsageTotals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    replies: int = 0

    def __add__(self, other: UsageTotals) -> UsageTotals:
        return UsageTotals(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.replies + other.replies,
        )


@dataclass(frozen=True, slots=True)
class AuditRecord:
    at: float
    scope: str
    who: str
    who_name: str
    action: str  # "set" | "reset"
    old: str | None
    new: str | None

    def to_json(self) -> str:
        return json.dumps(
            {
                "at": self.at,
                "scope": self.scope,
                "who": self.who,
                "who_name": self.who_name,
                "action": self.action,
                "old": self.old,
                "new": self.new,
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> AuditRecord:
        d = json.loads(raw)
        return cls(d["at"], d["scope"], d["who"], d["who_name"], d["action"], d["old"], d["new"])


@dataclass(frozen=True, slots=True)
class Context:
    """What a turn needs from the store: fitted history and the prompts of each scope."""

    history: list[StoredMessage]
    prompts: dict[str, str | None]


@dataclass(slots=True)
class Turn:
    """A held conversation lock; renewed in the background until released."""

    conversation: str
    token: str
    waited: float = 0.0
    released: bool = False
    renewer: asyncio.Task[None] | None = None
    local_held: bool = False


class _FifoLocks:
    """Per-key FIFO locks within one process, dropped when nobody uses them (bounded memory).

    asyncio.Lock wakes waiters in arrival order; Redis connections do not preserve the order
    of commands sent by different tasks, so the local queue is what keeps one process's
    messages of a conversation in arrival order.
    """

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def acquire(self, key: str, max_wait: float) -> None:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            await asyncio.wait_for(lock.acquire(), max_wait)
        except BaseException:
            self._unref(key)
            raise

    def release(self, key: str) -> None:
        lock, _ = self._locks[key]
        lock.release()
        self._unref(key)

    def _unref(self, key: str) -> None:
        lock, users = self._locks[key]
        if users <= 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Store(ABC):
    """The one interface for state. `history_budget` is the most history worth keeping."""

    def __init__(self, *, history_budget: int, history_ttl: int, lock_lease: float = 30.0):
        self.history_budget = history_budget
        self.history_ttl = history_ttl
        self.lock_lease = lock_lease

    # -- turns

    @abstractmethod
    async def acquire(
        self,
        conversation: str,
        once_id: str | None,
        max_wait: float = 300.0,
        *,
        activate: bool = False,
        require_active: bool = False,
    ) -> Turn | None:
        """Claim a post exactly once and take the conversation's lock, waiting in FIFO order.

        `activate` marks the conversation as one the bot answers (a mention), in the same step,
        so later replies in the thread are taken up even while this first answer is running.
        `require_active` (a thread reply without a mention) raises `NotActive` unless the bot
        answers this thread; the check is made in arrival order, after earlier messages of the
        conversation in this process, so a reply never overtakes the mention before it.
        Returns None when `once_id` was seen before (a duplicate delivery or a retry).
        """

    @abstractmethod
    async def release(self, turn: Turn) -> None:
        """Give the lock up (idempotent)."""

    @abstractmethod
    async def load(self, conversation: str, budget: int, prompt_scopes: Sequence[str]) -> Context:
        """The newest history within `budget` tokens and the prompt of each scope."""

    @abstractmethod
    async def commit(
        self, turn: Turn, messages: Sequence[StoredMessage], usage: Usage | None
    ) -> int:
        """Append a turn, trim to `history_budget` atomically, record usage, release the lock.

        Returns how many old messages trimming dropped.
        """

    @abstractmethod
    async def clear(self, conversation: str) -> None:
        """Forget a conversation's history (`!reset`); it stays an active thread."""

    @abstractmethod
    async def mark_active(self, conversation: str) -> None: ...

    @abstractmethod
    async def is_active(self, conversation: str) -> bool: ...

    @abstractmethod
    async def history(self, conversation: str) -> list[StoredMessage]:
        """Everything stored (operators and tests; turns use `load`)."""

    # -- prompts

    @abstractmethod
    async def get_prompts(self, scopes: Sequence[str]) -> dict[str, str | None]: ...

    @abstractmethod
    async def change_prompt(self, record: AuditRecord) -> str | None:
        """Set (`record.new`) or remove (None) a scope's prompt and audit it atomically.

        Returns the previous text; the stored audit record carries it as `old`.
        """

    @abstractmethod
    async def prompt_history(self, scope: str, limit: int = 10) -> list[AuditRecord]: ...

    # -- usage

    @abstractmethod
    async def usage(self, days: Sequence[str], dimension: str) -> dict[str, UsageTotals]:
        """Totals per day for one dimension, e.g. `c|slack:T1:C1` or `w|slack:T1`."""

    # -- small cache for adapters

    @abstractmethod
    async def cache_get(self, key: str) -> str | None: ...

    @abstractmethod
    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None: ...

    @abstractmethod
    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        """Set only if absent; True when this call set it (once-per-conversation notices)."""

    # -- lifecycle

    @abstractmethod
    async def ping(self) -> None:
        """Raise StoreUnavailable when the store does not answer."""

    async def eviction_policy(self) -> str | None:
        """Redis's `maxmemory-policy`; "" for a store that has none, None when Redis won't say.

        Only `noeviction` keeps exactly-once markers and locks until their TTL: they are the
        keys with a TTL, which is precisely what the `volatile-*` policies evict first.
        """
        return ""

    async def close(self) -> None:
        return None

    # -- shared lock renewal

    def _start_renewal(self, turn: Turn) -> None:
        turn.renewer = asyncio.create_task(self._renew_loop(turn))

    async def _renew_loop(self, turn: Turn) -> None:
        while not turn.released:
            await asyncio.sleep(self.lock_lease / 3)
            if turn.released:
                return
            try:
                if not await self._renew(turn):
                    log.warning("lock lost", extra={"conversation": turn.conversation})
                    return
            except Exception:  # a blip; the lease outlives two missed renewals
                log.warning("lock renewal failed", extra={"conversation": turn.conversation})

    @abstractmethod
    async def _renew(self, turn: Turn) -> bool: ...

    @staticmethod
    def _stop_renewal(turn: Turn) -> None:
        turn.released = True
        if turn.renewer is not None and turn.renewer is not asyncio.current_task():
            turn.renewer.cancel()


# ---------------------------------------------------------------------------------------------
# Redis

_ACQUIRE_FN = """
local function acquire(q, l, tok, lease)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if redis.call('HSET', l, tok, now + lease) == 1 then redis.call('RPUSH', q, tok) end
  redis.call('PEXPIRE', q, lease * 4)
  redis.call('PEXPIRE', l, lease * 4)
  while true do
    local head = redis.call('LINDEX', q, 0)
    if not head then
      redis.call('RPUSH', q, tok)
      head = tok
    end
    if head == tok then return 1 end
    local deadline = tonumber(redis.call('HGET', l, head) or '0')
    if deadline > now then return 0 end
    redis.call('LPOP', q)
    redis.call('HDEL', l, head)
  end
end
"""

# KEYS: once, queue, leases, active. ARGV: once ttl (s, or 0 = no marker), token, lease (ms),
# active ttl (s, or 0 = leave the active marker alone), 1 = only if active (else -2).
# The marker holds the claiming token, so running the script again with the same token (a retry
# after a dropped connection) is not mistaken for a duplicate delivery.
_BEGIN_LUA = (
    _ACQUIRE_FN
    + """
if tonumber(ARGV[5]) > 0 and redis.call('EXISTS', KEYS[4]) == 0 then return -2 end
if tonumber(ARGV[1]) > 0 then
  if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then
    if redis.call('GET', KEYS[1]) ~= ARGV[2] then return -1 end
  end
end
if tonumber(ARGV[4]) > 0 then redis.call('SET', KEYS[4], '1', 'EX', ARGV[4]) end
return acquire(KEYS[2], KEYS[3], ARGV[2], tonumber(ARGV[3]))
"""
)

# KEYS: queue, leases. ARGV: token, lease (ms).
_TRY_LUA = _ACQUIRE_FN + "return acquire(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]))"

# KEYS: queue, leases. ARGV: token, lease (ms).
_RENEW_LUA = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], now + tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) * 4)
return 1
"""

# KEYS: queue, leases. ARGV: token.
_RELEASE_LUA = """
redis.call('LREM', KEYS[1], 1, ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# Newest messages within a budget, read backwards in chunks: the cost follows what fits, not
# how long the stored list is. KEYS: history. ARGV: budget.
_LOAD_LUA = """
local budget = tonumber(ARGV[1])
local n = redis.call('LLEN', KEYS[1])
local out = {}
local total = 0
local hi = n - 1
local full = false
while hi >= 0 and not full do
  local lo = hi - 63
  if lo < 0 then lo = 0 end
  local items = redis.call('LRANGE', KEYS[1], lo, hi)
  for j = #items, 1, -1 do
    local cost = tonumber(string.match(items[j], '^(%d+)'))
    if total + cost > budget then
      full = true
      break
    end
    total = total + cost
    out[#out + 1] = items[j]
  end
  hi = lo - 1
end
local res = {}
local started = false
for j = #out, 1, -1 do
  if started or string.match(out[j], '^%d+\\tuser\\t') then
    started = true
    res[#res + 1] = out[j]
  end
end
return res
"""

# Append a turn and trim the oldest whole messages until the total fits, keeping a user message
# first. KEYS: history, total. ARGV: budget, ttl (s), messages...
_APPEND_LUA = """
local budget = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local total = tonumber(redis.call('GET', KEYS[2]) or '-1')
if total < 0 then
  total = 0
  for _, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
    total = total + tonumber(string.match(v, '^(%d+)'))
  end
end
for i = 3, #ARGV do
  redis.call('RPUSH', KEYS[1], ARGV[i])
  total = total + tonumber(string.match(ARGV[i], '^(%d+)'))
end
local dropped = 0
while true do
  local head = redis.call('LINDEX', KEYS[1], 0)
  if not head then
    total = 0
    break
  end
  if total <= budget and string.match(head, '^%d+\\tuser\\t') then break end
  redis.call('LPOP', KEYS[1])
  total = total - tonumber(string.match(head, '^(%d+)'))
  dropped = dropped + 1
end
if total > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
  redis.call('SET', KEYS[2], total, 'EX', ttl)
else
  redis.call('DEL', KEYS[2])
end
return dropped
"""

# KEYS: prompt, audit. ARGV: new text ('' with ARGV[3]=='reset' to delete), record json
# (without old), action, keep.
_PROMPT_LUA = """
local old = redis.call('GET', KEYS[1])
if ARGV[3] == 'reset' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
local rec = cjson.decode(ARGV[2])
if old then rec['old'] = old else rec['old'] = cjson.null end
redis.call('LPUSH', KEYS[2], cjson.encode(rec))
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
return old
"""


_ESCAPES = str.maketrans({"%": "%25", "{": "%7B", "}": "%7D"})
_SHARED_TAGS = frozenset({"prompts", "usage"})


def _esc(value: str) -> str:
    """An id as it goes into a key: injective, and unchanged for every id without `%{}`."""
    return value.translate(_ESCAPES)


def _esc_first(value: str) -> str:
    """Percent-encode the first character, to step an escaped id off a reserved word."""
    return f"%{ord(value[0]):02X}{value[1:]}"


class RedisStore(Store):
    def __init__(
        self,
        url: str,
        *,
        prefix: str = "threadwise:",
        history_budget: int,
        history_ttl: int,
        lock_lease: float = 30.0,
        socket_timeout: float = 5.0,
    ) -> None:
        super().__init__(
            history_budget=history_budget, history_ttl=history_ttl, lock_lease=lock_lease
        )
        import redis.asyncio as redis

        self._redis_errors: tuple[type[BaseException], ...] = (
            redis.RedisError,
            OSError,
            asyncio.TimeoutError,
        )
        if "{" in prefix or "}" in prefix:
            # The prefix would hold the hash tag of every key: all of them on one shard.
            raise ValueError(f"REDIS_KEY_PREFIX must not contain {{ or }}: {prefix!r}")
        self.prefix = prefix
        self._fifo = _FifoLocks()
        # A blocking pool: under a burst (a thousand conversations at once) a command waits up
        # to `socket_timeout` for a free connection instead of failing with "Too many
        # connections" and turning into an apology.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
            max_connections=256,
            timeout=socket_timeout,
        )
        self.r = redis.Redis.from_pool(pool)  # the client owns (and closes) the pool
        self._begin = self.r.register_script(_BEGIN_LUA)
        self._try = self.r.register_script(_TRY_LUA)
        self._renew_s = self.r.register_script(_RENEW_LUA)
        self._release = self.r.register_script(_RELEASE_LUA)
        self._load = self.r.register_script(_LOAD_LUA)
        self._append = self.r.register_script(_APPEND_LUA)
        self._prompt = self.r.register_script(_PROMPT_LUA)

    # keys: every id passes through `_esc` here, and nowhere else builds a key
    def _tag(self, conversation: str) -> str:
        if not conversation:
            # `{}` is no hash tag at all in Redis Cluster: the keys would scatter over shards.
            raise ValueError("empty conversation key")
        tag = _esc(conversation)
        return _esc_first(tag) if tag in _SHARED_TAGS else tag

    def _k(self, conversation: str, part: str) -> str:
        return f"{self.prefix}{{{self._tag(conversation)}}}:{part}"

    def _ok(self, conversation: str, once_id: str | None) -> str:
        """The exactly-once marker of one post (`:o` alone when there is no post id)."""
        return self._k(conversation, f"o:{_esc(once_id)}" if once_id else "o")

    def _pk(self, scope: str) -> str:
        key = _esc(scope)
        return f"{self.prefix}{{prompts}}:{_esc_first(key) if key.startswith('audit:') else key}"

    def _ak(self, scope: str) -> str:
        return f"{self.prefix}{{prompts}}:audit:{_esc(scope)}"

    def _uk(self, day: str) -> str:
        return f"{self.prefix}{{usage}}:{_esc(day)}"

    def _ck(self, key: str) -> str:
        return f"{self.prefix}cache:{{{_esc(key)}}}"

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
            await self.r.connection_pool.disconnect(inuse_connections=False)
        async with self._guard():
            return await call()

    async def acquire(
        self,
        conversation: str,
        once_id: str | None,
        max_wait: float = 300.0,
        *,
        activate: bool = False,
        require_active: bool = False,
    ) -> Turn | None:
        token = uuid.uuid4().hex
        lease_ms = int(self.lock_lease * 1000)
        q, lk = self._k(conversation, "q"), self._k(conversation, "l")
        once = self._ok(conversation, once_id)
        started = time.monotonic()
        await self._fifo.acquire(conversation, max_wait)
        try:
            async with self._guard():
                got = await self._again(
                    lambda: self._begin(
                        keys=[once, q, lk, self._k(conversation, "a")],
                        args=[
                            ONCE_TTL_SECONDS if once_id else 0,
                            token,
                            lease_ms,
                            self.history_ttl if activate else 0,
                            1 if require_active else 0,
                        ],
                    )
                )
                if got == -2:
                    raise NotActive(conversation)  # the local FIFO is left below
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
        self._start_renewal(turn)
        return turn

    def _drop_local(self, turn: Turn) -> None:
        if turn.local_held:
            turn.local_held = False
            self._fifo.release(turn.conversation)

    async def _renew(self, turn: Turn) -> bool:
        q, lk = self._k(turn.conversation, "q"), self._k(turn.conversation, "l")
        lease_ms = int(self.lock_lease * 1000)
        return bool(
            await self._again(lambda: self._renew_s(keys=[q, lk], args=[turn.token, lease_ms]))
        )

    async def release(self, turn: Turn) -> None:
        if turn.released:
            return
        self._stop_renewal(turn)
        q, lk = self._k(turn.conversation, "q"), self._k(turn.conversation, "l")
        try:
            await self._again(lambda: self._release(keys=[q, lk], args=[turn.token]))
        finally:
            self._drop_local(turn)

    async def _pipeline(self, ops: list[tuple]) -> list:
        """Run ops in one round trip; scripts go as EVALSHA with no SCRIPT EXISTS probe.

        redis-py's pipelines ask SCRIPT EXISTS before every pipeline holding a script (an extra
        round trip); we send EVALSHA directly and, if Redis lost its script cache (a restart),
        load the scripts and re-run only the scripts that failed.
        """
        from redis.exceptions import NoScriptError

        def queue(pipe, op):
            if op[0] == "script":
                _, script, keys, args = op
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            else:
                getattr(pipe, op[0])(*op[1:])

        async with self._guard():
            async with self.r.pipeline(transaction=False) as pipe:
                for op in ops:
                    queue(pipe, op)
                res = await pipe.execute(raise_on_error=False)
            missing = [i for i, r in enumerate(res) if isinstance(r, NoScriptError)]
            if missing:
                for script in {ops[i][1] for i in missing}:
                    await self.r.script_load(script.script)
                async with self.r.pipeline(transaction=False) as pipe:
                    for i in missing:
                        queue(pipe, ops[i])
                    again = await pipe.execute(raise_on_error=False)
                for i, r in zip(missing, again, strict=True):
                    res[i] = r
        for r in res:
            if isinstance(r, Exception):
                raise StoreUnavailable(f"Redis: {type(r).__name__}: {r}") from r
        return res

    async def load(self, conversation: str, budget: int, prompt_scopes: Sequence[str]) -> Context:
        ops: list[tuple] = [("script", self._load, [self._k(conversation, "h")], [max(budget, 0)])]
        if prompt_scopes:
            ops.append(("mget", [self._pk(s) for s in prompt_scopes]))
        res = await self._again(lambda: self._pipeline(ops))
        history = [decode_message(x) for x in res[0]]
        prompts = dict(zip(prompt_scopes, res[1], strict=True)) if prompt_scopes else {}
        return Context(history, prompts)

    async def commit(
        self, turn: Turn, messages: Sequence[StoredMessage], usage: Usage | None
    ) -> int:
        conv = turn.conversation
        self._stop_renewal(turn)
        try:
            return await self._commit(conv, turn, messages, usage)
        finally:
            self._drop_local(turn)

    async def _commit(
        self, conv: str, turn: Turn, messages: Sequence[StoredMessage], usage: Usage | None
    ) -> int:
        ops: list[tuple] = [
            (
                "script",
                self._append,
                [self._k(conv, "h"), self._k(conv, "t")],
                [self.history_budget, self.history_ttl, *(encode_message(m) for m in messages)],
            ),
            ("set", self._k(conv, "a"), "1", self.history_ttl),
        ]
        if usage is not None:
            key = self._uk(usage.day)
            ops += [("hincrby", key, f, v) for f, v in usage.fields().items()]
            ops.append(("expire", key, USAGE_TTL_SECONDS))
        ops.append(
            ("script", self._release, [self._k(conv, "q"), self._k(conv, "l")], [turn.token])
        )
        res = await self._pipeline(ops)
        return int(res[0])

    async def clear(self, conversation: str) -> None:
        async with self._guard():
            await self.r.delete(self._k(conversation, "h"), self._k(conversation, "t"))

    async def mark_active(self, conversation: str) -> None:
        async with self._guard():
            await self.r.set(self._k(conversation, "a"), "1", ex=self.history_ttl)

    async def is_active(self, conversation: str) -> bool:
        return bool(await self._again(lambda: self.r.exists(self._k(conversation, "a"))))

    async def history(self, conversation: str) -> list[StoredMessage]:
        async with self._guard():
            raw = await self.r.lrange(self._k(conversation, "h"), 0, -1)
        return [decode_message(x) for x in raw]

    async def get_prompts(self, scopes: Sequence[str]) -> dict[str, str | None]:
        if not scopes:
            return {}
        async with self._guard():
            vals = await self.r.mget([self._pk(s) for s in scopes])
        return dict(zip(scopes, vals, strict=True))

    async def change_prompt(self, record: AuditRecord) -> str | None:
        action = "reset" if record.new is None else "set"
        async with self._guard():
            return await self._prompt(
                keys=[self._pk(record.scope), self._ak(record.scope)],
                args=[record.new or "", record.to_json(), action, AUDIT_KEEP],
            )

    async def prompt_history(self, scope: str, limit: int = 10) -> list[AuditRecord]:
        async with self._guard():
            raw = await self.r.lrange(self._ak(scope), 0, limit - 1)
        return [AuditRecord.from_json(x) for x in raw]

    async def usage(self, days: Sequence[str], dimension: str) -> dict[str, UsageTotals]:
        names = [f"{dimension}|prompt", f"{dimension}|completion", f"{dimension}|replies"]
        async with self._guard():
            async with self.r.pipeline(transaction=False) as pipe:
                for d in days:
                    pipe.hmget(self._uk(d), names)
                res = await pipe.execute()
        return {
            d: UsageTotals(*(int(v or 0) for v in vals)) for d, vals in zip(days, res, strict=True)
        }

    async def cache_get(self, key: str) -> str | None:
        async with self._guard():
            return await self.r.get(self._ck(key))

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        async with self._guard():
            await self.r.set(self._ck(key), value, ex=ttl_seconds)

    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        async with self._guard():
            return bool(await self.r.set(self._ck(key), value, ex=ttl_seconds, nx=True))

    async def ping(self) -> None:
        await self._again(self.r.ping)

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


# ---------------------------------------------------------------------------------------------
# In process


class _Expiring:
    """A dict whose entries expire, pruned as it is used, never growing without bound."""

    def __init__(self, max_items: int = 100_000) -> None:
        self._d: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()
        self.max_items = max_items

    def get(self, key: Hashable) -> object | None:
        item = self._d.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            del self._d[key]
            return None
        return item[1]

    def set(self, key: Hashable, value: object, ttl: float) -> None:
        self._d[key] = (time.monotonic() + ttl, value)
        self._d.move_to_end(key)
        while len(self._d) > self.max_items:
            self._d.popitem(last=False)

    def pop(self, key: Hashable) -> None:
        self._d.pop(key, None)


class MemoryStore(Store):
    """The same contract in one process, for the console and for running without Redis."""

    def __init__(self, *, history_budget: int, history_ttl: int, lock_lease: float = 30.0):
        super().__init__(
            history_budget=history_budget, history_ttl=history_ttl, lock_lease=lock_lease
        )
        self._hist = _Expiring()
        self._once = _Expiring()
        self._active = _Expiring()
        self._cache = _Expiring()
        self._fifo = _FifoLocks()
        self._holders: dict[str, str] = {}
        self._prompts: dict[str, str] = {}
        self._audit: dict[str, list[AuditRecord]] = {}
        self._usage: dict[str, dict[str, int]] = {}

    async def acquire(
        self,
        conversation: str,
        once_id: str | None,
        max_wait: float = 300.0,
        *,
        activate: bool = False,
        require_active: bool = False,
    ) -> Turn | None:
        started = time.monotonic()
        await self._fifo.acquire(conversation, max_wait)
        if require_active and self._active.get(conversation) is None:
            self._fifo.release(conversation)
            raise NotActive(conversation)
        if once_id:
            key = (conversation, once_id)  # a tuple: no separator for an id to contain
            if self._once.get(key) is not None:
                self._fifo.release(conversation)
                return None
            self._once.set(key, True, ONCE_TTL_SECONDS)
        if activate:
            self._active.set(conversation, True, self.history_ttl)
        turn = Turn(conversation, uuid.uuid4().hex, waited=time.monotonic() - started)
        self._holders[conversation] = turn.token
        return turn

    async def _renew(self, turn: Turn) -> bool:
        return not turn.released

    async def release(self, turn: Turn) -> None:
        if turn.released:
            return
        turn.released = True
        if self._holders.get(turn.conversation) != turn.token:
            return  # not the holder (as in Redis, releasing a lock one does not hold is a no-op)
        del self._holders[turn.conversation]
        self._fifo.release(turn.conversation)

    async def load(self, conversation: str, budget: int, prompt_scopes: Sequence[str]) -> Context:
        stored = self._hist.get(conversation) or []
        return Context(
            fit_newest(stored, budget),  # type: ignore[arg-type]
            {s: self._prompts.get(s) for s in prompt_scopes},
        )

    async def commit(
        self, turn: Turn, messages: Sequence[StoredMessage], usage: Usage | None
    ) -> int:
        conv = turn.conversation
        stored: list[StoredMessage] = list(self._hist.get(conv) or [])  # type: ignore[arg-type]
        stored.extend(messages)
        kept = fit_newest(stored, self.history_budget)
        self._hist.set(conv, kept, self.history_ttl)
        self._active.set(conv, True, self.history_ttl)
        if usage is not None:
            if usage.day not in self._usage and len(self._usage) >= 35:
                del self._usage[min(self._usage)]  # kept 35 days, as in Redis
            day = self._usage.setdefault(usage.day, {})
            for f, v in usage.fields().items():
                day[f] = day.get(f, 0) + v
        await self.release(turn)
        return len(stored) - len(kept)

    async def clear(self, conversation: str) -> None:
        self._hist.pop(conversation)

    async def mark_active(self, conversation: str) -> None:
        self._active.set(conversation, True, self.history_ttl)

    async def is_active(self, conversation: str) -> bool:
        return self._active.get(conversation) is not None

    async def history(self, conversation: str) -> list[StoredMessage]:
        return list(self._hist.get(conversation) or [])  # type: ignore[call-overload]

    async def get_prompts(self, scopes: Sequence[str]) -> dict[str, str | None]:
        return {s: self._prompts.get(s) for s in scopes}

    async def change_prompt(self, record: AuditRecord) -> str | None:
        old = self._prompts.get(record.scope)
        if record.new is None:
            self._prompts.pop(record.scope, None)
        else:
            self._prompts[record.scope] = record.new
        stored = AuditRecord(
            record.at, record.scope, record.who, record.who_name, record.action, old, record.new
        )
        audit = self._audit.setdefault(record.scope, [])
        audit.insert(0, stored)
        del audit[AUDIT_KEEP:]
        return old

    async def prompt_history(self, scope: str, limit: int = 10) -> list[AuditRecord]:
        return list(self._audit.get(scope, [])[:limit])

    async def usage(self, days: Sequence[str], dimension: str) -> dict[str, UsageTotals]:
        out = {}
        for d in days:
            day = self._usage.get(d, {})
            out[d] = UsageTotals(
                day.get(f"{dimension}|prompt", 0),
                day.get(f"{dimension}|completion", 0),
                day.get(f"{dimension}|replies", 0),
            )
        return out

    async def cache_get(self, key: str) -> str | None:
        return self._cache.get(key)  # type: ignore[return-value]

    async def cache_set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._cache.set(key, value, ttl_seconds)

    async def cache_add(self, key: str, value: str, ttl_seconds: int) -> bool:
        if self._cache.get(key) is not None:
            return False
        self._cache.set(key, value, ttl_seconds)
        return True

    async def ping(self) -> None:
        return None


def make_store(settings) -> Store:
    """Redis when `REDIS_URL` is set, else the in-process store."""
    common = {
        "history_budget": settings.history_budget,
        "history_ttl": settings.history_ttl_seconds,
    }
    if settings.redis_url is not None:
        return RedisStore(
            settings.redis_url.get_secret_value(), prefix=settings.redis_key_prefix, **common
        )
    return MemoryStore(**common)
