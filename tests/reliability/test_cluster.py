"""The service on a real local Redis Cluster (REDIS_CLUSTER=true), and a failover mid-load.

A representative subset of the end-to-end tests runs against the session's 3-master cluster
(the two-replica test runs on it too, in test_replicas.py): a Slack mention and the replies that
race it are answered in order with the thread's memory; a Teams chat's activities delivered
twice are answered once each, in order.

The failover test owns its cluster: several conversations stream replies when the master that
holds the busiest one's slot is killed (SIGKILL, no goodbye); its replica takes over after the
node timeout (1 s). Every message gets its answer or, at worst, the usual apology; none is
answered twice; the memory written before the failover is there after it.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import pytest_asyncio
import redis

from bot.replies import APOLOGY_STORE
from tests.reliability.conftest import new_stack
from tests.support.cluster import ClusterUnavailable, LocalCluster
from tests.support.stack import (
    channel,
    figure,
    log_records,
    mention,
    message,
    slack_finished,
    slack_key,
    slack_thread,
    teams_key,
    teams_thread,
    ts,
)

pytestmark = [pytest.mark.reliability, pytest.mark.asyncio(loop_scope="module")]

LEASE_SECONDS = 30  # RedisStore's lock lease


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def on_cluster(model, slack, connector, redis_cluster):
    stack = new_stack(model, slack, connector, redis_cluster.url, REDIS_CLUSTER="true")
    await stack.start()
    yield stack
    await stack.close()


@pytest_asyncio.fixture(loop_scope="module")
async def cl(on_cluster):
    on_cluster.reset()
    yield on_cluster
    on_cluster.reset()


async def test_on_a_cluster_a_mention_and_replies_racing_it_are_answered_in_order(cl):
    cl.model.configure(tokens_per_second=60)
    ch, root = channel(), ts()
    assert await cl.send(mention("<@UBOT> one", ch=ch, at=root)) == 200
    # The replies arrive while the first answer streams: answered after it, in order.
    for text in ("two", "three"):
        assert await cl.send(message(text, ch=ch, thread=root, user="U2")) == 200
    assert await slack_thread(cl.slack, ch, root, 3, timeout=30) == [
        "Echo: one",
        "Echo: two",
        "Echo: three",
    ]
    last = [m["content"] for m in cl.model.chat_requests[-1].messages]
    assert last[-5:] == ["one", "Echo: one", "two", "Echo: two", "three"]
    history = await cl.stored_when(slack_key(ch, root), 6)
    assert [c for _, c in history] == [*last[-5:], "Echo: three"]


async def test_on_a_cluster_teams_activities_delivered_twice_are_answered_once_each(cl):
    act = cl.activity("group_chat_mention", text="<at>Threadwise</at> first")
    conv = act["conversation"]["id"]
    follow = cl.follow_up(act, "<at>Threadwise</at> second")
    for turn in (act, follow):
        assert await asyncio.gather(cl.teams(turn), cl.teams(turn)) == [200, 200]
        await teams_thread(cl.connector, conv, 1 if turn is act else 2, quiet=0)
    assert await teams_thread(cl.connector, conv, 2) == ["Echo: first", "Echo: second"]
    assert len(cl.model.chat_requests) == 2
    history = await cl.stored_when(teams_key(act), 4)
    assert [c for _, c in history] == ["first", "Echo: first", "second", "Echo: second"]


# -- failover ---------------------------------------------------------------------------------

THREADS = 6
DURING = 2  # messages per thread sent while the master is dead and its replica not yet promoted


class Probe(threading.Thread):
    """INCRs a key on one node until it stops answering, noting each acknowledged value."""

    def __init__(self, client: redis.Redis, key: str) -> None:
        super().__init__(daemon=True)
        self.client, self.key = client, key
        self.acked: list[tuple[float, int]] = []

    def run(self) -> None:
        while True:
            try:
                value = self.client.incr(self.key)
            except redis.RedisError:
                return
            self.acked.append((time.monotonic(), int(value)))
            time.sleep(0.001)


@pytest.fixture
def own_cluster():
    cluster = LocalCluster()
    try:
        cluster.start()
    except ClusterUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()


async def test_a_started_cluster_has_every_replica_synced_with_its_master(own_cluster):
    # The failover test's premise: the replica it promotes holds what its master held (a
    # replica still waiting for its first sync is promoted empty, and the threads it serves
    # lose their subscription and memory).
    replicas = [n for n in own_cluster.nodes if n.client().info("replication")["role"] == "slave"]
    assert len(replicas) == 3
    for node in replicas:
        info = node.client().info("replication")
        assert info["master_link_status"] == "up", (node.port, info)
        assert info["master_sync_in_progress"] == 0, (node.port, info)


async def test_killing_the_master_of_a_busy_conversation_mid_load_loses_no_turn(
    model, slack, connector, own_cluster
):
    stack = new_stack(model, slack, connector, own_cluster.url, REDIS_CLUSTER="true")
    stack.reset()
    svc = await stack.start()
    try:
        model.configure(tokens_per_second=40)  # every reply streams for about a second
        threads = [(channel(), ts()) for _ in range(THREADS)]
        for ch, root in threads:
            assert await stack.send(mention(f"<@UBOT> before in {ch}", ch=ch, at=root)) == 200
        for ch, root in threads:
            await slack_thread(slack, ch, root, 1, quiet=0, timeout=90)
        before = {ch: await stack.stored_when(slack_key(ch, root), 2) for ch, root in threads}
        assert all(len(h) == 2 for h in before.values()), before

        # -- mid-load: every thread streams a reply when the busy one's master dies ------------
        def master(ch: str, root: str):
            return own_cluster.master_of(f"{stack.prefix}{{{slack_key(ch, root)}}}:h")

        # The busy conversation: one not on the node REDIS_URL names (the test reads the
        # history through that node afterwards; the service itself knows every node by then).
        busy_ch, busy_root = next(t for t in threads if master(*t) is not own_cluster.nodes[0])
        victim = master(busy_ch, busy_root)
        on_victim = [(ch, root) for ch, root in threads if master(ch, root) is victim]
        sent = len(model.chat_requests)
        for ch, root in threads:
            assert await stack.send(message(f"in flight in {ch}", ch=ch, thread=root)) == 200
        await stack.model_requests_when(sent + THREADS)  # every thread's turn holds its lock
        # The loss window: a probe counts up on the victim (in the busy conversation's slot);
        # whatever it was told was written but the promoted replica lacks was lost.
        probe_key = f"{stack.prefix}{{{slack_key(busy_ch, busy_root)}}}:probe"
        probe = Probe(victim.client(), probe_key)
        probe.start()
        await asyncio.sleep(0.3)
        killed_at = time.monotonic()
        own_cluster.kill(victim)
        probe.join(10)
        figure("faults injected (cluster master killed)")
        for n in range(DURING):  # while no master serves the victim's slots
            for ch, root in threads:
                assert await stack.send(message(f"during {n} in {ch}", ch=ch, thread=root)) == 200
        await asyncio.to_thread(own_cluster.wait_for_failover)
        promoted = time.monotonic() - killed_at

        # -- every message: its answer or the apology, once; in order ---------------------------
        per_thread = 2 + DURING
        apologies = answered = 0
        for ch, root in threads:
            await slack_thread(
                slack, ch, root, per_thread, quiet=0, timeout=LEASE_SECONDS + 90
            )  # generous: a busy machine
        await slack.settle(0.5)
        for ch, root in threads:
            texts = [m.text for m in slack_finished(slack, ch, root)]
            assert len(texts) == per_thread, texts  # nothing answered twice, nothing lost
            sent_texts = [f"in flight in {ch}"] + [f"during {n} in {ch}" for n in range(DURING)]
            assert texts[0] == f"Echo: before in {ch}"
            for got, text in zip(texts[1:], sent_texts, strict=True):
                assert got in (f"Echo: {text}", APOLOGY_STORE), (got, text)
                apologies += got == APOLOGY_STORE
                answered += got != APOLOGY_STORE
        answers = [r for r in model.chat_requests[sent:]]
        asked = [r.messages[-1]["content"] for r in answers]
        assert len(asked) == len(set(asked)), "a message reached the model twice"

        settled = time.monotonic() - killed_at
        # -- the loss window of asynchronous replication ------------------------------------
        kept = int(own_cluster.master_of(probe_key).client().get(probe_key) or 0)
        acked_at = dict((v, t) for t, v in probe.acked)
        lost_writes = probe.acked[-1][1] - kept
        window_ms = (killed_at - acked_at[kept]) * 1000 if kept in acked_at else float("nan")
        # Anything acknowledged well before the kill survived it (replication lags by far less).
        assert kept >= max((v for t, v in probe.acked if t < killed_at - 1.0), default=0)

        # -- memory written before the failover is there after it ------------------------------
        lost = 0
        for ch, root in threads:
            history = await stack.stored(slack_key(ch, root))
            lost += sum(1 for m in before[ch] if m not in history)
        assert lost == 0, f"{lost} stored messages lost in the failover"

        # -- after: each thread answered with its memory -------------------------------------
        for ch, root in threads:
            assert await stack.send(message(f"after in {ch}", ch=ch, thread=root)) == 200
        for ch, root in threads:
            texts = await slack_thread(slack, ch, root, per_thread + 1, quiet=0, timeout=120)
            assert texts[-1] == f"Echo: after in {ch}"
        for request in model.chat_requests[-THREADS:]:
            contents = [m["content"] for m in request.messages]
            assert any(c.startswith("before in ") for c in contents), contents
        records = log_records(svc)
        assert not [r for r in records if r.get("msg") == "turn failed"], "unexpected crash path"
        print(
            f"\ncluster failover: replica promoted {promoted:.1f}s after the kill, every message "
            f"answered {settled:.1f}s after it; "
            f"{len(on_victim)} of {THREADS} threads on the killed master; "
            f"{answered} answered, {apologies} apologies, 0 answered twice, {lost} stored lost; "
            f"probe: {lost_writes} of {len(probe.acked)} acknowledged writes lost, last kept "
            f"{window_ms:.0f} ms before the kill"
        )
        figure("cluster failover: acknowledged probe writes lost", lost_writes)
        figure("cluster failover: messages answered", answered)
        figure("cluster failover: apologies", apologies)
        figure("cluster failover: answered twice", 0)
        figure("cluster failover: stored messages lost", lost)
        figure("fault scenarios survived")
    finally:
        model.configure(tokens_per_second=None)
        await stack.close()
