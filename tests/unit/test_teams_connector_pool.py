"""Replies share one connector client per service URL, replaced before its token can expire.

The SDK's factory makes each client with a new HTTP session and a token fetched on a worker
thread; `Outbound` keeps one per service URL instead of two per reply. These tests drive it with
a factory that makes real `TeamsConnectorClient`s (posting to the fake connector) and counts them.
"""

from __future__ import annotations

import asyncio

import pytest
from microsoft_agents.activity import Activity, ConversationAccount
from microsoft_agents.hosting.core.connector.teams import TeamsConnectorClient

from adapters.teams.connector import ConnectorError, Outbound
from bot.metrics import Metrics
from tests.support.fakes.fake_connector import FakeConnector, allow_loopback_service_urls


class CountingFactory:
    """Stands in for `RestChannelServiceClientFactory`: real clients, each one recorded."""

    def __init__(self) -> None:
        self.made: list[tuple[str, TeamsConnectorClient]] = []
        self.closed: list[TeamsConnectorClient] = []

    async def create_connector_client(self, context, identity, service_url, audience, scopes,
                                      use_anonymous=False):  # fmt: skip
        client = TeamsConnectorClient(endpoint=service_url, token=f"token-{len(self.made)}")
        close = client.close

        async def recorded_close() -> None:
            self.closed.append(client)
            await close()

        client.close = recorded_close  # type: ignore[method-assign]
        self.made.append((service_url, client))
        return client


@pytest.fixture
async def connector():
    async with FakeConnector() as fake:
        yield fake


@pytest.fixture
async def outbound(monkeypatch):
    allow_loopback_service_urls(monkeypatch)  # the fake connector listens on loopback
    factory = CountingFactory()
    out = Outbound(factory, app_id="app", anonymous=False, metrics=Metrics())  # type: ignore[arg-type]
    out.factory = factory  # type: ignore[attr-defined]
    yield out
    await out.aclose()


def message(text: str) -> Activity:
    return Activity(type="message", text=text, conversation=ConversationAccount(id="a:1"))


async def test_replies_to_one_service_url_share_one_client(outbound, connector):
    async def reply(i: int) -> None:
        async with outbound.client(connector.url) as client:
            await outbound.post(client, message(f"reply {i}"))

    await asyncio.gather(*(reply(i) for i in range(20)))
    assert len(outbound.factory.made) == 1
    assert len(connector.messages()) == 20
    assert outbound.factory.closed == []  # kept for the next reply


async def test_each_service_url_gets_its_own_client(outbound, connector):
    other = connector.url.replace("127.0.0.1", "localhost")
    for url in (connector.url, other, connector.url, other):
        async with outbound.client(url) as client:
            await outbound.post(client, message("hi"))
    assert [url for url, _ in outbound.factory.made] == [connector.url, other]


async def test_client_is_replaced_when_old_and_closed_when_its_last_reply_lets_go(
    outbound, connector, monkeypatch
):
    monkeypatch.setattr(Outbound, "client_max_age", 0.05)
    held = await outbound.open(connector.url)  # a long reply still holds the first client
    await asyncio.sleep(0.1)
    async with outbound.client(connector.url) as fresh:
        assert fresh is not held
    assert outbound.factory.closed == []  # still in use by the long reply
    await outbound.post(held, message("the long reply ends"))
    await outbound.release(held)
    await asyncio.sleep(0)  # the close runs as its own task
    await asyncio.sleep(0)
    assert outbound.factory.closed == [held]
    assert len(connector.messages()) == 1


async def test_token_refused_with_401_gets_the_next_reply_a_new_client(outbound, connector):
    connector.fail(401, code="Unauthorized")
    async with outbound.client(connector.url) as first:
        with pytest.raises(ConnectorError) as refused:
            await outbound.post(first, message("refused"))
    assert refused.value.status == 401
    async with outbound.client(connector.url) as second:
        await outbound.post(second, message("delivered"))
    assert second is not first
    assert [m.text for m in connector.messages()] == ["delivered"]
    await asyncio.sleep(0)
    assert first in outbound.factory.closed


async def test_service_urls_beyond_the_bound_retire_the_oldest(outbound, monkeypatch):
    monkeypatch.setattr(Outbound, "max_service_urls", 2)
    urls = [f"http://127.0.0.{i}:9/" for i in range(1, 4)]
    for url in urls:
        async with outbound.client(url):
            pass
    await asyncio.sleep(0)
    assert [c for _, c in outbound.factory.made[:1]] == outbound.factory.closed
    async with outbound.client(urls[0]):  # evicted: made again
        pass
    assert len(outbound.factory.made) == 4


async def test_close_closes_every_client_even_one_in_use(outbound, connector):
    in_use = await outbound.open(connector.url)
    await outbound.aclose()
    assert outbound.factory.closed == [in_use]
