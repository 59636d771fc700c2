"""A real local Redis Cluster for tests: 3 masters + 3 replicas on free ports.

Six `redis-server --cluster-enabled yes` joined by `redis-cli --cluster create
--cluster-replicas 1`; `cluster-node-timeout` is low (1 s) so a killed master's replica takes
over within a couple of seconds. `start` returns once every replica has had its first sync: a
replica still waiting for it would be promoted empty by a failover. Every process is stopped and
the temp folder removed even when start-up fails half-way.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

NODE_TIMEOUT_MS = 1000


class ClusterUnavailable(Exception):
    """redis-server or redis-cli is not installed (tests skip with this reason)."""


@dataclass
class Node:
    port: int
    dir: Path
    proc: subprocess.Popen | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)


@dataclass
class LocalCluster:
    nodes: list[Node] = field(default_factory=list)
    root: Path | None = None

    @property
    def url(self) -> str:
        """A node's URL, as REDIS_URL names one node of a cluster."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, count: int = 6) -> LocalCluster:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            raise ClusterUnavailable("redis-server and redis-cli are needed for a local cluster")
        self.root = Path(tempfile.mkdtemp(prefix="tw-cluster-"))
        try:
            for _ in range(count):
                port = _free_port_pair()
                node = Node(port, self.root / str(port))
                node.dir.mkdir()
                node.proc = subprocess.Popen(
                    [server, *_node_args(port, node.dir)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                self.nodes.append(node)
            for node in self.nodes:
                _wait(lambda n=node: n.client().ping(), f"node {node.port} to start")
            subprocess.run(
                [cli, "--cluster", "create"]
                + [f"127.0.0.1:{n.port}" for n in self.nodes]
                + ["--cluster-replicas", "1", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=60,
            )
            _wait(self.healthy, "the cluster to be ok")
            _wait(self.replicas_synced, "every replica's first sync from its master")
        except BaseException:
            self.stop()
            raise
        return self

    def healthy(self) -> bool:
        """Every live node says the cluster is ok and knows 3 masters with a replica each."""
        live = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for node in live:
            try:
                c = node.client()
                if _state(c) != "ok":
                    return False
                if len(c.execute_command("CLUSTER", "SLOTS")) != 3:
                    return False
            except redis.RedisError:
                return False
        return bool(live)

    def replicas_synced(self) -> bool:
        """Every replica is linked to its master and holds its data (no first sync pending).

        The cluster says ok as soon as every slot has a master, before the replicas have
        synced; a failover then would promote a replica with none of the master's keys.
        """
        infos = [n.client().info("replication") for n in self._live()]
        replicas = [info for info in infos if info["role"] == "slave"]
        return len(infos) - len(replicas) == 3 and all(
            info["master_link_status"] == "up" and not info["master_sync_in_progress"]
            for info in replicas
        )

    def masters(self) -> list[Node]:
        return [n for n in self._live() if n.client().info("replication")["role"] == "master"]

    def master_of(self, key: str) -> Node:
        """The live master serving `key`'s slot."""
        live = self._live()
        slot = int(live[0].client().execute_command("CLUSTER", "KEYSLOT", key))
        for start, end, master, *_ in live[0].client().execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise LookupError(key)

    def kill(self, node: Node) -> None:
        """SIGKILL a node (a crashed master: no goodbye to the cluster)."""
        assert node.proc is not None
        node.proc.kill()
        node.proc.wait(10)
        node.proc = None

    def wait_for_failover(self, timeout: float = 30.0) -> None:
        """Until a replica has taken over the dead master's slots and the cluster is ok."""

        def ok() -> bool:
            live = self._live()
            states = {_state(n.client()) for n in live}
            return states == {"ok"} and len(self.masters()) == 3

        _wait(ok, "a replica to take over", timeout)

    def _live(self) -> list[Node]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def commandstats(self) -> dict[str, int]:
        """Calls per command, summed over the live masters."""
        out: dict[str, int] = {}
        for node in self.masters():
            for name, stats in node.client().info("commandstats").items():
                key = name.removeprefix("cmdstat_")
                out[key] = out.get(key, 0) + int(stats["calls"])
        return out

    def reset_stats(self) -> None:
        for node in self._live():
            node.client().config_resetstat()

    def delete_prefix(self, prefix: str) -> None:
        """Delete only the keys under a test's prefix, on every master."""
        for node in self.masters():
            c = node.client()
            for key in c.scan_iter(match=f"{prefix}*", count=1000):
                with contextlib.suppress(redis.RedisError):
                    c.delete(key)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(10)
                node.proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def _free_port_pair() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20000, 50000)
        if all(_free(p) for p in (port, port + 10000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_args(port: int, folder: Path) -> list[str]:
    return [
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        str(folder / "nodes.conf"),
        "--cluster-node-timeout",
        str(NODE_TIMEOUT_MS),
        # A replica takes over however long ago it last heard from its master (a test's
        # cluster is young and idle: the default factor can leave the slots unserved).
        "--cluster-replica-validity-factor",
        "0",
        "--repl-ping-replica-period",
        "1",
        # A replica's first sync starts at once, not after the default 5 s spent waiting for
        # more replicas to share one transfer.
        "--repl-diskless-sync-delay",
        "0",
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
        "--maxmemory-policy",
        "noeviction",
    ]


def _state(c: redis.Redis) -> str:
    """`cluster_state` from CLUSTER INFO (ok, or fail while slots are not served)."""
    info = c.execute_command("CLUSTER", "INFO")
    if isinstance(info, dict):
        return str(info.get("cluster_state"))
    for line in str(info).splitlines():
        if line.startswith("cluster_state:"):
            return line.split(":", 1)[1].strip()
    return ""


def _wait(check, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)
