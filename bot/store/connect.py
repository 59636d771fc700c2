"""How `RedisStore` reaches Redis: one endpoint or a Redis Cluster, by password or Entra token.

`connect` builds the client the store uses as `self.r`; the store's commands are the same for
both kinds (every script keeps its keys in one hash slot, see `keys`). What differs lives here:

- One endpoint (`REDIS_CLUSTER=false`): a blocking pool, so a burst waits for a free
  connection instead of failing with "Too many connections".
- Redis Cluster (`REDIS_CLUSTER=true`, the OSS cluster protocol): redis-py's asyncio
  `RedisCluster` talks to every shard's master directly and follows MOVED/ASK. `_Cluster`
  adds what a turn needs on top: at most `max_connections` commands in flight (redis-py's
  per-node pools do not block, they fail) and riding out a failover — a connection refused or
  CLUSTERDOWN is retried with backoff for up to `RIDE_OUT_SECONDS`, the time the cluster takes
  to promote a replica (about node-timeout plus an election), before the store gives up.
- A per-turn pipeline across slots (`pipeline_groups`): the ops of one pipeline are split by
  the node that serves each op's key and each node's share is sent as its own pipeline, all
  at once, so a turn still waits one round trip per pipeline. Sending one redis-py cluster
  pipeline instead is not safe to retry: when one node fails, redis-py re-sends every command
  whose reply was falsy, including scripts that already ran on the other nodes (an `append`
  that dropped 0 messages would append twice).
- `REDIS_AUTH=entra`: the password is a Microsoft Entra token of the managed identity, the
  user its object id (the token's `oid`), from the Redis-maintained `redis-entraid` credential
  provider, which renews it before it expires and re-authenticates open connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Sequence
from typing import Any

from redis.auth.idp import IdentityProviderInterface

RIDE_OUT_SECONDS = 10.0
ENTRA_SCOPE = "https://redis.azure.com/.default"

# Set while a task holds one of `_Cluster`'s permits, so what redis-py runs inside it (a
# pipeline's redirected commands) does not wait for a second one.
_holding: contextvars.ContextVar[bool] = contextvars.ContextVar("tw_redis_permit", default=False)


def connect(
    url: str,
    *,
    cluster: bool = False,
    auth: str = "password",
    credential: Any = None,
    socket_timeout: float = 5.0,
    max_connections: int = 256,
) -> Any:
    """The redis-py asyncio client for `url`: `redis.asyncio.Redis` or a `RedisCluster`.

    `credential` (REDIS_AUTH=entra only): an azure-identity credential (`get_token(scope)`);
    None takes `DefaultAzureCredential()`.
    """
    import redis.asyncio as redis

    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "health_check_interval": 30,
    }
    if auth == "entra":
        common["credential_provider"] = entra_credentials(credential)
    if cluster:
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialWithJitterBackoff

        client = _cluster_class().from_url(
            url,
            max_connections=max_connections,
            # Pipelines retry a failed node every 0.25 s this many times (redis-py's rule);
            # single commands also get `_Cluster`'s backoff up to RIDE_OUT_SECONDS.
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), retries=20),
            **common,
        )
        client._tw_permits = asyncio.Semaphore(max_connections)
        return client
    from redis.driver_info import DriverInfo

    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=socket_timeout,
        # One DriverInfo for every connection: made per connection, it reads redis-py's package
        # metadata from disk each time (for CLIENT SETINFO), 1.9% of a busy process's samples
        # while a burst opened the pool's connections.
        driver_info=DriverInfo(),
        **common,
    )
    if auth == "entra":
        # The client wires the provider's renewals to the pool only when told about it.
        client = redis.Redis(
            connection_pool=pool, credential_provider=common["credential_provider"]
        )
    else:
        client = redis.Redis(connection_pool=pool)
    client.auto_close_connection_pool = True  # the client owns (and closes) the pool
    return client


def store_options(settings: Any) -> dict[str, Any]:
    """`RedisStore`'s connection options from the settings (REDIS_CLUSTER, REDIS_AUTH)."""
    options: dict[str, Any] = {"cluster": settings.redis_cluster, "auth": settings.redis_auth}
    if settings.redis_auth == "entra":
        from azure.identity import DefaultAzureCredential

        # The app's managed identity (AZURE_CLIENT_ID names a user-assigned one), as for the
        # model; locally `az login`.
        options["credential"] = DefaultAzureCredential(
            managed_identity_client_id=settings.azure_client_id
        )
    return options


async def describe(client: Any, settings: Any) -> str:
    """What `threadwise doctor` adds after PING: the cluster's masters, the Entra sign-in."""
    out = ""
    if is_cluster(client):
        out += f" (Redis Cluster: {len(client.get_primaries())} masters answered)"
    if settings.redis_auth == "entra":
        out += " (signed in with the managed identity's Entra token)"
    return out


def is_cluster(client: Any) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


def pipeline_groups(client: Any, keys: Sequence[str]) -> list[list[int]]:
    """The positions of a pipeline's ops, grouped into one pipeline per node that serves them.

    `keys[i]` is the key op i works on (all of an op's keys share a slot). One endpoint: one
    group. Before the cluster client has learned the slot map, ops are grouped by slot.
    """
    if not is_cluster(client):
        return [list(range(len(keys)))]
    groups: dict[object, list[int]] = {}
    cache = client.nodes_manager.slots_cache
    for i, key in enumerate(keys):
        slot = client.keyslot(key)
        nodes = cache.get(slot)
        groups.setdefault(nodes[0].name if nodes else slot, []).append(i)
    return list(groups.values())


async def ping(client: Any) -> Any:
    """PING one endpoint, or every master of a cluster (a dead replica does not fail it)."""
    if is_cluster(client):
        return await client.ping(target_nodes=client.PRIMARIES)
    return await client.ping()


@contextlib.asynccontextmanager
async def permit(client: Any):
    """One of the cluster client's in-flight slots (a no-op for one endpoint)."""
    permits: asyncio.Semaphore | None = getattr(client, "_tw_permits", None)
    if permits is None or _holding.get():
        yield
        return
    async with permits:
        token = _holding.set(True)
        try:
            yield
        finally:
            _holding.reset(token)


async def drop_idle(client: Any) -> None:
    """Drop idle pooled connections (after Redis restarted, each would fail once)."""
    if is_cluster(client):
        for node in client.get_nodes():
            await node.disconnect_free_connections()
    else:
        await client.connection_pool.disconnect(inuse_connections=False)


_CLUSTER: type | None = None


def _cluster_class() -> type:
    """`RedisCluster` with bounded in-flight commands and a failover ride-out (built lazily,
    so importing the store does not import redis-py's cluster module)."""
    global _CLUSTER
    if _CLUSTER is not None:
        return _CLUSTER
    from redis.asyncio.cluster import RedisCluster
    from redis.exceptions import ClusterDownError, ConnectionError, SlotNotCoveredError

    class _Cluster(RedisCluster):
        async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            delay = 0.05
            while True:
                try:
                    async with permit(self):
                        return await super().execute_command(*args, **kwargs)
                except (ConnectionError, ClusterDownError, SlotNotCoveredError, AttributeError):
                    # A dead master refuses connections until its replica is promoted; then
                    # the slot map is reloaded and the command goes to the new master. (A
                    # TimeoutError is not retried here: the command may have run.) The
                    # AttributeError is a redis-py race during a failover: another task's error
                    # handling closes every connection while this one is being opened.
                    if time.monotonic() - started + delay > RIDE_OUT_SECONDS:
                        raise
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)

    _CLUSTER = _Cluster
    return _CLUSTER


# -- Entra ID


def entra_credentials(credential: Any = None) -> Any:
    """redis-entraid's credential provider over an azure-identity credential.

    The provider asks for a token when a connection opens and again at 70% of a token's life,
    and sends AUTH <oid> <token> on every open connection with the new one.
    """
    from redis.auth.token_manager import RetryPolicy, TokenManagerConfig
    from redis_entraid.cred_provider import EntraIdCredentialsProvider

    if credential is None:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    config = TokenManagerConfig(0.7, 0, 100, RetryPolicy(3, 100))
    return EntraIdCredentialsProvider(_CredentialIdentity(credential), config)


class _CredentialIdentity(IdentityProviderInterface):
    """redis-entraid's identity provider for an azure-identity credential, off the event loop.

    redis-entraid asks for tokens synchronously from inside the event loop; a managed identity's
    token comes over HTTP. So the token is fetched in a worker thread, and asked-for tokens are
    served from it: once half of its life has passed the next one is fetched in the background,
    ready by the time the provider renews (at 70%). Only the very first token, on the first
    connection, is fetched where it is asked for.
    """

    def __init__(self, credential: Any, scope: str = ENTRA_SCOPE) -> None:
        self._credential = credential
        self._scope = scope
        self._token: Any = None  # redis.auth.token.JWToken
        self._issued = 0.0
        self._lock = threading.Lock()
        self._fetching = False

    def _fetch(self) -> Any:
        from redis.auth.token import JWToken

        token = JWToken(self._credential.get_token(self._scope).token)
        with self._lock:
            self._token, self._issued = token, time.time()
            self._fetching = False
        return token

    def _refresh_in_background(self) -> None:
        with self._lock:
            if self._fetching:
                return
            self._fetching = True

        def run() -> None:
            try:
                self._fetch()
            except Exception:
                with self._lock:
                    self._fetching = False

        try:
            asyncio.get_running_loop().run_in_executor(None, run)
        except RuntimeError:  # no loop: the caller is synchronous anyway
            run()

    def request_token(self, force_refresh: bool = False) -> Any:
        from redis.auth.err import RequestTokenErr

        with self._lock:
            token, issued = self._token, self._issued
        try:
            if token is None or token.ttl() <= 1000:
                return self._fetch()
        except Exception as exc:
            raise RequestTokenErr(exc) from exc
        life = token.get_expires_at_ms() / 1000 - issued
        if time.time() - issued >= life / 2:
            self._refresh_in_background()
        return token
