"""Network partitions for real: nodes in their own network namespaces find each other by mDNS, are cut apart and
joined again over and over while every side publishes, and end up holding the same events.

The test builds a private network that exists only inside namespaces it creates: a hub namespace holding the
bridges, and one namespace per node joined to the hub by a veth pair. Nothing is added to the host's interfaces
and no packet leaves these namespaces. The CLI still reaches every node from the host, through the Unix control
socket in the node's data folder (filesystem sockets do not belong to a network namespace).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.firmware.tools import need, require

SUBNET = "10.77.0"            # exists only inside the namespaces this test creates
PORT = 8470                   # every node has its own namespace, so all may use the default port
NODES = 4
EVENTS_PER_ROUND = 2          # published on every node in every round
ROUND_TIMEOUT = 60.0          # bounds each wait; generous because the whole suite may run beside this test
CONVERGE_TIMEOUT = 90.0


@dataclass(frozen=True)
class Cut:
    """One partition: the groups of nodes that still reach each other, each on a bridge of its own. A node in no
    group has its hub port taken down (a pulled cable); `heal` restores the whole network after the round."""

    name: str
    groups: tuple[tuple[int, ...], ...]
    heal: bool = False


# Varied on purpose: a pulled cable and split bridges, the same split redrawn with no healing in between (so nodes
# carry what they learnt across to the other side), and everyone alone.
ROUNDS = [
    Cut("node 0 unplugged", ((1, 2, 3),), heal=True),
    Cut("split 2|2", ((0, 1), (2, 3))),
    Cut("split 2|2 crosswise, straight from the last split", ((0, 2), (1, 3)), heal=True),
    Cut("split 3|1", ((0, 1, 2), (3,))),
    Cut("split 2|1 with node 0 unplugged", ((1, 3), (2,)), heal=True),
    Cut("everyone unplugged", ()),
]


def _run(*args: str) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


class PartitionNode:
    """One `nnode run` process in its own network namespace, on its own address of the private subnet."""

    def __init__(self, root: Path, index: int, netns: str) -> None:
        self.index = index
        self.name = f"p{index}"
        self.netns = netns
        self.address = f"{SUBNET}.{11 + index}"
        self.url = f"http://{self.address}:{PORT}"
        self.root = root / self.name
        self.root.mkdir(parents=True)
        self.config = self.root / "config.toml"
        self.log = self.root / "node.log"
        self.db = self.root / "data" / "node.db"
        self.proc: subprocess.Popen | None = None
        self.write_config(trusted=[])
        self.id = self.cli("init").strip().splitlines()[-1].split()[-1]

    def write_config(self, trusted: list[str]) -> None:
        # No static peers: whatever a node syncs with, it found by mDNS. Short timeouts because a cut peer costs
        # each anti-entropy round a whole request timeout.
        self.config.write_text(
            f'[node]\nname = "{self.name}"\ndata_dir = "{self.root / "data"}"\n'
            f'[http]\nhost = "{self.address}"\nport = {PORT}\n'
            f'[discovery]\nenabled = true\ninterfaces = ["{self.address}"]\n'
            f'[sync]\nanti_entropy_interval = 1\nrequest_timeout = 3\n'
            f'trusted_keys = {json.dumps(trusted)}\n')

    def cli_command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "node", "--config", str(self.config), *args]

    def cli(self, *args: str) -> str:
        """Run `nnode ...` from the host namespace (it talks to the node through its control socket)."""
        result = subprocess.run(self.cli_command(*args), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise AssertionError(f"{self.name}: nnode {' '.join(args)} failed ({result.returncode}): "
                                 f"{result.stderr.strip()}")
        return result.stdout

    def start(self) -> None:
        with open(self.log, "ab") as handle:
            self.proc = subprocess.Popen(["ip", "netns", "exec", self.netns, *self.cli_command("run")],
                                         stdout=handle, stderr=handle,
                                         env=os.environ | {"PYTHONUNBUFFERED": "1"})

    def serving(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited: {self.tail()}")
        return self.log.exists() and b'"msg": "node serving"' in self.log.read_bytes()

    def status(self) -> dict:
        return json.loads(self.cli("status", "--json"))

    def rows(self) -> tuple[int, set[str]]:
        """(number of event rows, their distinct ids), read straight from the database, read-only."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM events")]
        return len(ids), set(ids)

    def ids(self) -> set[str]:
        return self.rows()[1]

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; safe to call twice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


class Lab:
    """The private network: a hub namespace with one bridge per possible group, a namespace per node, and the
    nodes running in them. `close()` stops the nodes and deletes every namespace (which takes the veths and
    bridges with it); safe to call twice.

    A split moves hub ports between bridges rather than using VLAN filtering or netem, which not every kernel
    has (this project's test VM has neither): plain bridges and veths are all it needs.
    """

    def __init__(self, root: Path, count: int) -> None:
        self.prefix = f"nnp{os.getpid()}"
        self.hub = f"{self.prefix}h"
        self.namespaces: list[str] = []
        self.nodes: list[PartitionNode] = []
        self.root = root
        self.count = count

    def build(self) -> None:
        self._add_namespace(self.hub)
        for b in range(self.count):
            bridge = f"br{b}"
            _run("ip", "-n", self.hub, "link", "add", bridge, "type", "bridge")
            # Without snooping the bridge floods multicast to every port, so mDNS needs no IGMP querier.
            _run("ip", "-n", self.hub, "link", "set", bridge, "type", "bridge", "mcast_snooping", "0")
            _run("ip", "-n", self.hub, "link", "set", bridge, "up")
        for i in range(self.count):
            netns = f"{self.prefix}n{i}"
            self._add_namespace(netns)
            # Created inside the hub namespace with its far end moved straight into the node's: the host never
            # holds either end.
            _run("ip", "-n", self.hub, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0",
                 "netns", netns)
            _run("ip", "-n", self.hub, "link", "set", f"p{i}", "master", "br0", "up")
            _run("ip", "-n", netns, "link", "set", "eth0", "multicast", "on", "up")
            _run("ip", "-n", netns, "addr", "add", f"{SUBNET}.{11 + i}/24", "dev", "eth0")

    def add_nodes(self) -> None:
        """Initialise one node per node namespace (identities first: the trust lists need every key)."""
        for i in range(self.count):
            self.nodes.append(PartitionNode(self.root, i, f"{self.prefix}n{i}"))

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")

    def partition(self, cut: Cut) -> None:
        """Put each group on a bridge of its own and unplug the nodes in no group."""
        placed = {i: b for b, group in enumerate(cut.groups) for i in group}
        for i in range(self.count):
            port = f"p{i}"
            if i in placed:
                _run("ip", "-n", self.hub, "link", "set", port, "master", f"br{placed[i]}", "up")
            else:
                _run("ip", "-n", self.hub, "link", "set", port, "down")

    def heal(self) -> None:
        """Every port up and on the same bridge again."""
        for i in range(self.count):
            _run("ip", "-n", self.hub, "link", "set", f"p{i}", "master", "br0", "up")

    def close(self) -> None:
        for node in self.nodes:
            try:
                node.stop()
            except Exception:      # a stuck node must not keep the namespaces alive
                if node.proc is not None:
                    node.proc.kill()
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self.namespaces.clear()


@pytest.fixture
def lab(short_tmp):
    """A built private network with NODES initialised (not yet running) nodes; torn down even on failure."""
    need("ip")
    require(os.geteuid() == 0, "needs root (creates network namespaces)")
    network = Lab(short_tmp, NODES)
    try:
        try:
            network.build()
        except AssertionError as exc:   # no netns, veth or bridge support here (a container without the rights)
            require(False, f"cannot build the test network ({exc})")
        network.add_nodes()
        yield network
    finally:
        network.close()


def _wait(what: str, check, nodes: list[PartitionNode], timeout: float = ROUND_TIMEOUT) -> None:
    """Poll `check` until true (bounded); on timeout fail with each node's last log lines."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.name} ({n.address}):\n{n.tail()}" for n in nodes)
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{logs}")
        time.sleep(0.2)


def _publish(nodes: list[PartitionNode], label: str, count: int) -> dict[int, set[str]]:
    """`nnode publish` `count` notices on every node, all at once; the ids each node published."""
    procs = [(node, subprocess.Popen(node.cli_command("publish", f"{label}: {node.name} #{k}"),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
             for node in nodes for k in range(count)]
    outputs = [(node, proc, *proc.communicate(timeout=60)) for node, proc in procs]   # every one ends first
    ids: dict[int, set[str]] = {node.index: set() for node in nodes}
    for node, proc, out, err in outputs:
        assert proc.returncode == 0, f"{node.name}: nnode publish failed: {err.strip()}"
        ids[node.index].add(out.split()[1])            # "published <id> (seq N)"
    return ids


def test_partitions_heal_to_the_same_events_everywhere(lab):
    nodes = lab.nodes
    keys = [n.id for n in nodes]
    for node in nodes:
        node.write_config(trusted=[k for k in keys if k != node.id])
    for node in nodes:
        node.start()
    _wait("every node serving", lambda: all(n.serving() for n in nodes), nodes)

    # Every node learnt every other by mDNS over the bridge, at its namespace address, and approved it from the
    # trust list: no peer came from the config or by hand.
    def discovered() -> bool:
        for node in nodes:
            peers = {p["key"]: p for p in node.status()["peers"]}
            for other in nodes:
                if other is node:
                    continue
                peer = peers.get(other.id)
                if peer is None or peer["state"] != "approved":
                    return False
                assert peer["source"] == "mdns" and peer["url"] == other.url, peer
        return True
    _wait("every node discovering and approving the others", discovered, nodes)

    published: set[str] = set()
    for number, cut in enumerate(ROUNDS, 1):
        lab.partition(cut)
        fresh = _publish(nodes, f"round {number}", EVENTS_PER_ROUND)
        published |= set().union(*fresh.values())
        # An unplugged node is a side of its own.
        sides = [*cut.groups, *((i,) for i in range(NODES) if not any(i in g for g in cut.groups))]
        for group in sides:
            members = [nodes[i] for i in group]
            side = set().union(*(fresh[i] for i in group))
            # Within each side, what was just published reaches every node of that side...
            _wait(f"round {number} ({cut.name}): side {group} sharing its new events",
                  lambda side=side, members=members: all(side <= m.ids() for m in members), nodes)
            # ...and none of what the other sides published crossed the cut: the partition is real.
            others = set().union(*(ids for i, ids in fresh.items() if i not in group))
            for m in members:
                assert not m.ids() & others, f"round {number} ({cut.name}): {m.name} got events across the cut"
        if cut.heal:
            lab.heal()
            # Events flow again over the restored links: pushed, or pulled by anti-entropy when a push worker is
            # still waiting out a request it started into the cut. Older differences need not be repaired yet.
            healed = _publish(nodes, f"after round {number}", 1)
            new = set().union(*healed.values())
            published |= new
            _wait(f"after round {number}: new events reaching every node",
                  lambda new=new: all(new <= n.ids() for n in nodes), nodes)
    lab.heal()

    def converged() -> bool:
        sets = [n.ids() for n in nodes]
        return all(s == sets[0] for s in sets) and published <= sets[0]
    _wait("every node holding the same events after the last heal", converged, nodes, CONVERGE_TIMEOUT)

    reference = nodes[0].ids()
    for node in nodes:
        rows, ids = node.rows()
        assert ids == reference, f"{node.name} holds a different set of events"
        assert published <= ids, f"{node.name} lacks published events"
        assert rows == len(ids), f"{node.name} holds duplicate events"
        status = node.status()
        assert status["events"] == len(ids)
        assert status["quarantined"] == {}, f"{node.name} quarantined {list(status['quarantined'])}"
        assert status["db_ok"]
