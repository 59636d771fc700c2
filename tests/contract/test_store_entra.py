"""REDIS_AUTH=entra: the store signs in with an Entra token from a credential, and renews it.

A local `redis-server` stands in for Azure Managed Redis: its ACL user is the identity's object
id and its passwords are the tokens the fake credential has issued (a token is accepted until
the test retires it, as Entra's are until they expire). The fake is an azure-identity-style
credential: `get_token(scope)` returns an `AccessToken` (a JWT with `oid` and `exp`).
"""

from __future__ import annotations

import asyncio
import threading
import time

import jwt
import pytest
import redis
from azure.core.credentials import AccessToken

from bot.settings import SettingsError, load_settings
from bot.store import RedisStore
from bot.store.connect import ENTRA_SCOPE
from bot.trimming import StoredMessage

OID = "5b0c9d8e-1f2a-4b3c-8d7e-6f5a4b3c2d1e"  # the managed identity's object id


class FakeCredential:
    """Issues a new token on each call, each valid for `ttl` seconds, and tells Redis's ACL."""

    def __init__(self, admins: list[redis.Redis], ttl: float) -> None:
        self.admins = admins
        self.ttl = ttl
        self.issued: list[tuple[str, float, int]] = []  # token, when, exp
        self.scopes: list[tuple[str, ...]] = []
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **_: object) -> AccessToken:
        with self._lock:
            exp = int(time.time() + self.ttl)
            n = len(self.issued)
            token = jwt.encode(
                {"oid": OID, "exp": exp, "n": n},
                "a test signing key of 32 bytes or more",
                algorithm="HS256",
            )
            for admin in self.admins:
                admin.acl_setuser(
                    OID,
                    enabled=True,
                    passwords=[f"+{token}"],
                    keys=["~*"],
                    channels=["&*"],
                    commands=["+@all"],
                )
            self.issued.append((token, time.time(), exp))
            self.scopes.append(scopes)
            return AccessToken(token, exp)

    def retire(self, token: str) -> None:
        for admin in self.admins:
            admin.acl_setuser(OID, enabled=True, passwords=[f"-{token}"])


def admin_of(port: int) -> redis.Redis:
    return redis.Redis(port=port, decode_responses=True, socket_timeout=5)


def auth_calls(admin: redis.Redis) -> int:
    """AUTH commands Redis has run (a renewal re-authenticates open connections with AUTH)."""
    return int(admin.info("commandstats").get("cmdstat_auth", {}).get("calls", 0))


def entra_users(admin: redis.Redis) -> list[str]:
    return [c["user"] for c in admin.client_list() if c.get("user") == OID]


async def turn(store: RedisStore, conv: str, n: int) -> None:
    t = await store.acquire(conv, f"m{n}")
    assert t is not None
    await store.load(conv, 1000, ["global"])
    await store.commit(t, [StoredMessage("user", f"q{n}", 3)], None)


async def test_entra_token_is_the_password_and_is_renewed_before_it_expires(
    redis_server, key_prefix
):
    admin = admin_of(redis_server.port)
    cred = FakeCredential([admin], ttl=4)
    store = RedisStore(
        redis_server.url,
        prefix=key_prefix,
        auth="entra",
        credential=cred,
        history_budget=1000,
        history_ttl=60,
    )
    try:
        await turn(store, "c", 0)
        assert cred.scopes[0] == (ENTRA_SCOPE,)
        assert entra_users(admin), "the store's connections are not signed in as the identity"
        first, _, first_exp = cred.issued[0]
        auths = auth_calls(admin)

        # Renewed before the first token expires, and open connections signed in again.
        deadline = time.monotonic() + 10
        n = 100
        while len(cred.issued) < 2 or auth_calls(admin) <= auths:
            assert time.monotonic() < deadline, "the token was not renewed"
            n += 1
            await turn(store, "c", n)
            await asyncio.sleep(0.1)
        assert cred.issued[1][1] < first_exp, "renewed only after the token expired"

        # The first token retired (expired, at Entra): new connections use the renewed one.
        cred.retire(first)
        admin.client_kill_filter(user=OID)
        await turn(store, "c", 1)
        assert entra_users(admin)
        history = [m.content for m in await store.history("c")]
        assert history[0] == "q0" and history[-1] == "q1"
    finally:
        await store.close()
        admin.close()


async def test_entra_auth_works_with_the_cluster_client(redis_cluster, key_prefix):
    admins = [admin_of(n.port) for n in redis_cluster.nodes]
    cred = FakeCredential(admins, ttl=3600)
    store = RedisStore(
        redis_cluster.url,
        prefix=key_prefix,
        cluster=True,
        auth="entra",
        credential=cred,
        history_budget=1000,
        history_ttl=60,
    )
    try:
        for i in range(6):  # conversations on every shard
            await turn(store, f"c{i}", i)
        signed_in = [n for n in redis_cluster.masters() if entra_users(n.client())]
        assert len(signed_in) == 3
    finally:
        await store.close()
        for admin in admins:
            admin.acl_deluser(OID)
            admin.close()
        redis_cluster.delete_prefix(key_prefix)


def test_entra_with_a_password_in_redis_url_is_refused(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "rediss://:secret@cache.example:10000/0")
    monkeypatch.setenv("REDIS_AUTH", "Entra")
    with pytest.raises(SettingsError, match="REDIS_URL"):
        load_settings(_env_file=None)
    monkeypatch.setenv("REDIS_URL", "rediss://cache.example:10000/0")
    settings = load_settings(_env_file=None)
    assert settings.redis_auth == "entra" and not settings.redis_cluster


async def test_the_settings_pick_the_cluster_client_and_the_managed_identity(monkeypatch):
    from azure.identity import DefaultAzureCredential
    from redis.asyncio.cluster import RedisCluster
    from redis_entraid.cred_provider import EntraIdCredentialsProvider

    from bot.store import make_store

    monkeypatch.setenv("REDIS_URL", "rediss://cache.example:10000/0")
    monkeypatch.setenv("REDIS_AUTH", "entra")
    monkeypatch.setenv("REDIS_CLUSTER", "true")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-0000000000c1")
    store = make_store(load_settings(_env_file=None))  # nothing is contacted yet
    try:
        assert isinstance(store.r, RedisCluster)
        provider = store.r.connection_kwargs["credential_provider"]
        assert isinstance(provider, EntraIdCredentialsProvider)
        assert isinstance(provider._idp._credential, DefaultAzureCredential)
    finally:
        await store.close()
