"""Directory benchmark: lookups against Kademlia, login time, idle signalling.

    python benchmarks/directory.py [--quick] [--parts lookups,login,idle] [--runs N]

1. **Lookups at 50, 200 and 1,000 supernodes** (``--quick``: 50 and 200),
   Hopline's one-hop directory next to the ``kademlia`` package (PyPI) storing
   and finding the same keys. Both use one latency model: every node gets
   seeded random coordinates on a 150 x 150 ms plane and the RTT between two
   nodes is their distance plus 1 ms (the model of
   :mod:`hopline.testing.directory_sim`). Hopline runs in that in-process
   simulation (no crashes); Kademlia runs N real ``kademlia.network.Server``
   nodes in this process on 127.0.0.1 UDP, every RPC delayed by the model RTT
   between caller and callee before it is sent, and the wall time of each
   ``get`` is measured. Kademlia's RPCs are counted by overriding the
   protocol's ``call_find_value``/``call_find_node``/``call_store``/
   ``call_ping``; a context variable attributes each to the lookup (or store)
   that caused it. Messages = requests sent + responses received; round trips
   = sequential RPC waves (crawl rounds, plus the caching STORE a ``get``
   awaits after finding the value). kademlia 2.2.3's ``find_neighbors`` stops
   at an empty bucket and can answer FIND_NODE with no contacts (joiners end
   with one contact, ~2% of lookups at 1,000 nodes fail), so the benchmark
   gives its nodes a routing table that returns the k closest known contacts.
2. **Login time** with real processes (a login server and 3 supernodes):
   ``ClientSession.connect()`` from a cold host cache (empty: bootstrap comes
   from the login server), a warm one (saved by the previous connect) and a
   stale one (every entry dead), median of several runs each.
3. **Idle signalling**: one connected session with its default config runs
   idle for 60 s (``--quick``: 20 s); every UDP datagram its socket sends and
   receives is counted, next to the home link's own counters.

Prints one table per part and writes benchmarks/results/directory.json
(``--parts`` runs a subset; the parts not run keep their last results there).
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import heapq
import json
import logging
import math
import random
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from kademlia.crawling import ValueSpiderCrawl
from kademlia.network import Server
from kademlia.node import Node
from kademlia.protocol import KademliaProtocol
from kademlia.routing import RoutingTable
from kademlia.utils import digest

from _common import print_table, write_json
from hopline.client.hostcache import HOSTCACHE_FILE, HostCache, Source
from hopline.client.profile import Profile
from hopline.client.session import ClientSession, SessionConfig
from hopline.demo.cluster import Cluster
from hopline.overlay.slots import DEFAULT_SLOTS, OwnershipMap
from hopline.testing.directory_sim import SimConfig, run_simulation
from hopline.testing.network import logged_in, start_network
from hopline.wire import Address

LOOPBACK = "127.0.0.1"
PLANE_MS = 150.0  # the directory simulation's coordinate plane
REPLICATION = 3


# ---------------------------------------------------------------- part 1: Kademlia


@dataclass
class Tally:
    """RPCs caused by one store or lookup."""

    rpcs: Counter[str] = field(default_factory=Counter)
    responses: int = 0
    rounds: int = 0
    cache_store: bool = False

    @property
    def requests(self) -> int:
        return sum(self.rpcs.values())


_TALLY: contextvars.ContextVar[Tally | None] = contextvars.ContextVar("tally", default=None)


class Plane:
    """The shared latency model: coordinates per UDP port, RTT = distance + 1 ms."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.where: dict[int, tuple[float, float]] = {}
        self.enabled = False

    def place(self, port: int) -> None:
        self.where[port] = (self.rng.uniform(0, PLANE_MS), self.rng.uniform(0, PLANE_MS))

    def rtt_ms(self, a: int, b: int) -> float:
        (ax, ay), (bx, by) = self.where[a], self.where[b]
        return math.hypot(ax - bx, ay - by) + 1.0


class FixedRoutingTable(RoutingTable):
    """The library's routing table with ``find_neighbors`` returning the k closest contacts.

    kademlia 2.2.3's ``TableTraverser`` stops at the first empty bucket once the
    buckets on one side are used up, so a node can answer FIND_NODE with no
    contacts although it knows dozens; joiners then end with one contact and
    some lookups fail. This version scans every bucket instead.
    """

    def find_neighbors(self, node: Node, k: int | None = None, exclude: Node | None = None) -> Any:
        self.buckets[self.get_bucket_for(node)].touch_last_updated()
        contacts = [
            contact
            for bucket in self.buckets
            for contact in bucket.get_nodes()
            if contact.id != node.id and (exclude is None or not contact.same_home_as(exclude))
        ]
        return heapq.nsmallest(k or self.ksize, contacts, key=node.distance_to)


class CountingProtocol(KademliaProtocol):
    """The library's protocol; each outgoing RPC is counted and delayed by the model RTT."""

    plane: Plane
    port: int

    def __init__(self, source_node: Node, storage: Any, ksize: int) -> None:
        super().__init__(source_node, storage, ksize)
        self.router = FixedRoutingTable(self, ksize, source_node)

    async def _before(self, kind: str, node: Node) -> None:
        tally = _TALLY.get()
        if tally is not None:
            tally.rpcs[kind] += 1
        if self.plane.enabled:
            await asyncio.sleep(self.plane.rtt_ms(self.port, node.port) / 1000)

    @staticmethod
    def _after(result: tuple[bool, Any]) -> None:
        tally = _TALLY.get()
        if tally is not None and result[0]:
            tally.responses += 1

    async def call_find_node(self, node_to_ask: Node, node_to_find: Node) -> Any:
        await self._before("find_node", node_to_ask)
        result = await super().call_find_node(node_to_ask, node_to_find)
        self._after(result)
        return result

    async def call_find_value(self, node_to_ask: Node, node_to_find: Node) -> Any:
        await self._before("find_value", node_to_ask)
        result = await super().call_find_value(node_to_ask, node_to_find)
        self._after(result)
        return result

    async def call_store(self, node_to_ask: Node, key: bytes, value: Any) -> Any:
        await self._before("store", node_to_ask)
        result = await super().call_store(node_to_ask, key, value)
        self._after(result)
        return result

    async def call_ping(self, node_to_ask: Node) -> Any:
        await self._before("ping", node_to_ask)
        result = await super().call_ping(node_to_ask)
        self._after(result)
        return result


class CountingValueCrawl(ValueSpiderCrawl):
    """The library's value crawl, counting its rounds (one per wave of <= alpha RPCs)."""

    async def _find(self, rpcmethod: Any) -> Any:
        tally = _TALLY.get()
        if tally is not None:
            tally.rounds += 1
        return await super()._find(rpcmethod)

    async def _handle_found_values(self, values: list[Any]) -> Any:
        tally = _TALLY.get()
        if tally is not None and len(self.nearest_without_value) > 0:
            tally.cache_store = True  # the crawl awaits a STORE to the nearest node without it
        return await super()._handle_found_values(values)


class CountingServer(Server):
    """A kademlia Server on the counting protocol; ``get`` is the library's, counted."""

    protocol_class = CountingProtocol

    def __init__(self, plane: Plane, node_id: bytes) -> None:
        super().__init__(node_id=node_id)
        self.plane = plane

    def _create_protocol(self) -> CountingProtocol:
        protocol = CountingProtocol(self.node, self.storage, self.ksize)
        protocol.plane = self.plane
        return protocol

    async def start(self) -> int:
        await self.listen(0, LOOPBACK)
        port = int(self.transport.get_extra_info("sockname")[1])
        self.protocol.port = port
        self.plane.place(port)
        return port

    async def get(self, key: str) -> Any:
        """Server.get of kademlia 2.2.3 with the counting crawl."""
        dkey = digest(key)
        if self.storage.get(dkey) is not None:
            return self.storage.get(dkey)
        node = Node(dkey)
        nearest = self.protocol.router.find_neighbors(node)
        if not nearest:
            return None
        crawl = CountingValueCrawl(self.protocol, node, nearest, self.ksize, self.alpha)
        return await crawl.find()


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank), as the directory simulation computes it."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def key_name(index: int) -> str:
    """The same names the directory simulation gives its users."""
    return f"user{index:06d}"


async def kademlia_run(n: int, keys: int, seed: int, concurrency: int) -> dict[str, Any]:
    """Bootstrap n nodes on loopback, store ``keys`` keys, get each from a random node."""
    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)
    rng = random.Random(seed)
    plane = Plane(seed)
    nodes = [CountingServer(plane, rng.randbytes(20)) for _ in range(n)]
    wall = time.perf_counter()
    ports = [await node.start() for node in nodes]
    limit = asyncio.Semaphore(concurrency)
    try:
        # Join (16 at a time) through a random node that has joined, then a refresh pass
        # (each node crawls for its own id again from its neighbours).
        joined = [0]

        async def join(i: int) -> None:
            async with limit:
                await nodes[i].bootstrap([(LOOPBACK, ports[rng.choice(joined)])])
                joined.append(i)

        await asyncio.gather(*(join(i) for i in range(1, n)))

        async def refresh(node: CountingServer) -> None:
            async with limit:
                await node.bootstrap(node.bootstrappable_neighbors()[:REPLICATION])

        await asyncio.gather(*(refresh(node) for node in nodes))
        table = [sum(len(b) for b in node.protocol.router.buckets) for node in nodes]
        joined_s = time.perf_counter() - wall

        async def store(index: int) -> Tally:
            async with limit:
                tally = Tally()
                _TALLY.set(tally)
                await nodes[rng.randrange(n)].set(key_name(index), f"record-{index}")
                return tally

        stores = await asyncio.gather(*(store(i) for i in range(keys)))

        plane.enabled = True  # lookups run under the latency model

        async def lookup(index: int, requester: CountingServer) -> tuple[Tally, float, bool]:
            async with limit:
                tally = Tally()
                _TALLY.set(tally)
                start = time.perf_counter()
                value = await requester.get(key_name(index))
                elapsed = (time.perf_counter() - start) * 1000
                return tally, elapsed, value == f"record-{index}"

        order = list(range(keys))
        rng.shuffle(order)
        found = await asyncio.gather(*(lookup(i, nodes[rng.randrange(n)]) for i in order))
    finally:
        for node in nodes:
            node.stop()
            if node.protocol is not None:  # RPCs still in flight (e.g. unawaited STOREs)
                for future, timer in node.protocol._outstanding.values():
                    timer.cancel()
                    future.cancel()
                node.protocol._outstanding.clear()
        await asyncio.sleep(0)
    tallies = [t for t, _, _ in found]
    latencies = [ms for _, ms, _ in found]
    kinds: Counter[str] = Counter()
    for tally in tallies:
        kinds.update(tally.rpcs)
    return {
        "nodes": n,
        "keys": keys,
        "ksize": nodes[0].ksize,
        "alpha": nodes[0].alpha,
        "routing_table": {"min": min(table), "mean": round(statistics.mean(table), 1)},
        "answered_pct": round(100.0 * sum(ok for _, _, ok in found) / keys, 2),
        "answered_locally": sum(1 for t in tallies if t.requests == 0),
        "rpcs_per_lookup": round(sum(t.requests for t in tallies) / keys, 2),
        "rpcs_per_lookup_by_kind": {k: round(v / keys, 2) for k, v in sorted(kinds.items())},
        "messages_per_lookup": round(sum(t.requests + t.responses for t in tallies) / keys, 2),
        "rpc_timeouts": sum(t.requests - t.responses for t in tallies),
        "round_trips_per_lookup": round(sum(t.rounds + t.cache_store for t in tallies) / keys, 2),
        "messages_per_store": round(sum(t.requests + t.responses for t in stores) / keys, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "lookup_concurrency": concurrency,
        "seconds": {"join": round(joined_s, 1), "total": round(time.perf_counter() - wall, 1)},
    }


def hopline_run(n: int, keys: int, seed: int) -> dict[str, Any]:
    """The one-hop directory in simulation, plus the messages a publish costs."""
    summary = run_simulation(SimConfig(supernodes=n, users=keys, crashed=0, seed=seed)).summary()
    # A publish: the home supernode stores locally if it owns the slot and
    # sends a StoreReplica (request + reply) to every other owner.
    rng = random.Random(seed)
    ids = [f"sn-{i:05d}" for i in range(n)]
    owners = OwnershipMap(ids, REPLICATION, DEFAULT_SLOTS)
    sent = 0
    for index in range(keys):
        home = rng.choice(ids)
        sent += 2 * sum(1 for node in owners.owners_of_user(key_name(index)) if node != home)
    return {
        **summary,
        "round_trips_per_lookup": summary["hops_per_lookup"],
        "messages_per_store": round(sent / keys, 1),
    }


def part_lookups(sizes: list[int], keys: int, seed: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for n in sizes:
        hop = hopline_run(n, keys, seed)
        kad = asyncio.run(kademlia_run(n, keys, seed, concurrency=16))
        rows.append({"supernodes": n, "hopline": hop, "kademlia": kad})
        print(f"  {n} nodes: kademlia joined in {kad['seconds']['join']} s", flush=True)

    def ratio(row: dict[str, Any], key: str) -> str:
        base = row["hopline"][key]
        return f"{row['kademlia'][key] / base:.1f}x" if base else "-"

    table = []
    for row in rows:
        for name in ("hopline", "kademlia"):
            r = row[name]
            table.append(
                [
                    row["supernodes"] if name == "hopline" else "",
                    name,
                    r["answered_pct"],
                    round(100.0 * r["answered_locally"] / keys, 1),
                    r["round_trips_per_lookup"],
                    r["messages_per_lookup"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["messages_per_store"],
                ]
            )
        table.append(
            [
                "",
                "ratio kad/hop",
                "",
                "",
                ratio(row, "round_trips_per_lookup"),
                ratio(row, "messages_per_lookup"),
                ratio(row, "p50_ms"),
                ratio(row, "p99_ms"),
                ratio(row, "messages_per_store"),
            ]
        )
    print_table(
        f"Lookups: {keys} keys, RTT = plane distance + 1 ms (Hopline: simulation, R=3; "
        f"Kademlia {version('kademlia')}: real nodes on loopback UDP, k=20, alpha=3)",
        [
            "nodes",
            "system",
            "found %",
            "local %",
            "round trips/lookup",
            "messages/lookup",
            "p50 ms",
            "p99 ms",
            "messages/store",
        ],
        table,
    )
    for row in rows:
        k = row["kademlia"]
        print(
            f"kademlia {row['supernodes']}: RPCs/lookup {k['rpcs_per_lookup']} "
            f"{k['rpcs_per_lookup_by_kind']}, routing table min/mean "
            f"{k['routing_table']['min']}/{k['routing_table']['mean']}, "
            f"RPC timeouts {k['rpc_timeouts']}, "
            f"seconds {k['seconds']}"
        )
    return rows


# ---------------------------------------------------------------- parts 2 and 3: real processes


def dead_addresses(count: int) -> list[Address]:
    """Loopback addresses nobody listens on (bound, noted, closed)."""
    found = []
    for _ in range(count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((LOOPBACK, 0))
            found.append(Address.parse(f"{LOOPBACK}:{sock.getsockname()[1]}"))
    return found


def write_stale_cache(profile: Profile, dead: list[Address]) -> None:
    """A host cache whose every entry answered recently but is gone now."""
    path = profile.path / HOSTCACHE_FILE
    path.unlink(missing_ok=True)
    cache = HostCache.load(path)
    now = time.time()
    for address in dead:
        cache.record_success(address, 0.002, now - 60, Source.OVERLAY)
    cache.save()


async def timed_connect(profile: Profile) -> tuple[float, float, int]:
    """Connect a fresh session: (total ms, ms until the home was chosen, cache entries)."""
    session = ClientSession(profile)
    await session.endpoint.open_udp(LOOPBACK, 0)
    homed: list[float] = []
    learn = session._learn_address

    async def learn_after_home() -> None:
        homed.append(time.perf_counter())
        await learn()

    session._learn_address = learn_after_home
    entries = len(session.cache)
    start = time.perf_counter()
    try:
        await session.connect()
        done = time.perf_counter()
    finally:
        await session.close()
    return (done - start) * 1000, (homed[0] - start) * 1000, entries


async def part_login(profile: Profile, runs: int, stale_entries: int) -> dict[str, Any]:
    cases: dict[str, list[tuple[float, float, int]]] = {"cold": [], "warm": [], "stale": []}
    for _ in range(runs):
        (profile.path / HOSTCACHE_FILE).unlink(missing_ok=True)
        cases["cold"].append(await timed_connect(profile))
        cases["warm"].append(await timed_connect(profile))  # the cache the cold run saved
        write_stale_cache(profile, dead_addresses(stale_entries))
        cases["stale"].append(await timed_connect(profile))
    result = {}
    for name, samples in cases.items():
        totals = [s[0] for s in samples]
        homes = [s[1] for s in samples]
        result[name] = {
            "runs": len(samples),
            "cache_entries": samples[0][2],
            "median_ms": round(statistics.median(totals), 1),
            "min_ms": round(min(totals), 1),
            "max_ms": round(max(totals), 1),
            "home_median_ms": round(statistics.median(homes), 1),
            "samples_ms": [round(t, 1) for t in totals],
        }
    descriptions = {
        "cold": "empty host cache: bootstrap from the login server",
        "warm": "host cache saved by the previous connect",
        "stale": f"{stale_entries} entries, all dead (recent successes, ports now closed)",
    }
    print_table(
        f"Login (ClientSession.connect: race to a home, learn address, publish), "
        f"3 supernodes, {runs} runs each",
        ["host cache", "entries", "median ms", "min ms", "max ms", "home chosen ms (median)"],
        [
            [
                f"{name}: {descriptions[name]}",
                r["cache_entries"],
                r["median_ms"],
                r["min_ms"],
                r["max_ms"],
                r["home_median_ms"],
            ]
            for name, r in result.items()
        ],
    )
    return {"cases": result, "descriptions": descriptions}


class CountingDatagrams(asyncio.DatagramProtocol):
    """Wraps the session socket's protocol, counting what arrives."""

    def __init__(self, inner: asyncio.DatagramProtocol) -> None:
        self.inner = inner
        self.packets = 0
        self.bytes = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.packets += 1
        self.bytes += len(data)
        self.inner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self.inner.error_received(exc)


class CountingTransport:
    """Stands in for the session's UDP transport, counting what is sent."""

    def __init__(self, inner: asyncio.DatagramTransport) -> None:
        self.inner = inner
        self.packets = 0
        self.bytes = 0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.packets += 1
        self.bytes += len(data)
        self.inner.sendto(data, addr)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def part_idle(profile: Profile, seconds: float) -> dict[str, Any]:
    (profile.path / HOSTCACHE_FILE).unlink(missing_ok=True)
    session = ClientSession(profile)  # default SessionConfig
    await session.endpoint.open_udp(LOOPBACK, 0)
    udp = session.endpoint._udp
    assert udp is not None
    received = CountingDatagrams(udp.get_protocol())
    udp.set_protocol(received)
    sent = CountingTransport(udp)
    session.endpoint._udp = sent
    runner: asyncio.Task[None] | None = None
    try:
        await session.connect()
        home = session.home
        assert home is not None
        runner = asyncio.create_task(session.run())
        # Keepalives go out every keepalive_s after run() starts; a window that
        # opens half a period in holds exactly seconds / keepalive_s of them.
        await asyncio.sleep(session.config.keepalive_s / 2)
        before = (sent.packets, sent.bytes, received.packets, received.bytes)
        link_before = home.core.link.stats
        start = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        after = (sent.packets, sent.bytes, received.packets, received.bytes)
        link_after = home.core.link.stats
        rehomes = session.rehomes
    finally:
        if runner is not None:
            runner.cancel()
        await session.close()
    minutes = elapsed / 60
    d_sent, d_sent_b, d_recv, d_recv_b = (a - b for a, b in zip(after, before, strict=True))

    def link(name: str) -> int:
        return int(getattr(link_after, name) - getattr(link_before, name))

    breakdown = {
        "sent: keepalive Ping requests": link("messages_sent"),
        "sent: ACK-only datagrams": link("ack_only_datagrams_sent"),
        "sent: link keep-alive PINGs": link("pings_sent"),
        "sent: link PONGs": link("pongs_sent"),
        "received: Pong replies (each with the ACK of its Ping)": link("messages_received"),
        "received: ACK-only datagrams": link("ack_only_datagrams_received"),
        "received: link keep-alive PINGs": link("pings_received"),
        "received: link PONGs": link("pongs_received"),
    }
    result = {
        "seconds": round(elapsed, 1),
        "keepalive_s": SessionConfig().keepalive_s,
        "packets_sent": d_sent,
        "packets_received": d_recv,
        "bytes_sent": d_sent_b,
        "bytes_received": d_recv_b,
        "packets_per_min": round((d_sent + d_recv) / minutes, 1),
        "packets_sent_per_min": round(d_sent / minutes, 1),
        "packets_received_per_min": round(d_recv / minutes, 1),
        "bytes_per_min": round((d_sent_b + d_recv_b) / minutes),
        "link_datagrams_sent": link("datagrams_sent"),
        "link_datagrams_received": link("datagrams_received"),
        "breakdown_per_min": {k: round(v / minutes, 1) for k, v in breakdown.items()},
        "rehomes": rehomes,
        "anchor_tox_packets_per_min": 600,
        "aim_packets_per_min": 10,
    }
    print_table(
        f"Idle signalling of one client (default SessionConfig, keepalive every "
        f"{result['keepalive_s']:g} s), {result['seconds']} s on the UDP socket",
        ["direction", "packets", "bytes", "packets/min", "bytes/min"],
        [
            ["sent", d_sent, d_sent_b, result["packets_sent_per_min"], round(d_sent_b / minutes)],
            [
                "received",
                d_recv,
                d_recv_b,
                result["packets_received_per_min"],
                round(d_recv_b / minutes),
            ],
            [
                "total",
                d_sent + d_recv,
                d_sent_b + d_recv_b,
                result["packets_per_min"],
                result["bytes_per_min"],
            ],
        ],
    )
    print_table(
        "What the idle packets are (home link counters, per minute; a Pong carries an ACK)",
        ["datagram kind", "per min"],
        [[k, v] for k, v in result["breakdown_per_min"].items()],
    )
    verdict = "under" if result["packets_per_min"] < 10 else "above"
    print(
        f"idle total {result['packets_per_min']} packets/min ({verdict} the aim of 10; "
        f"Tox idles at ~600)"
    )
    return result


async def real_parts(
    workdir: Path, ls: Any, runs: int, stale_entries: int, idle_s: float, parts: set[str]
) -> dict[str, Any]:
    profile = await logged_in(workdir, ls, "benchuser", bind=LOOPBACK)
    real: dict[str, Any] = {}
    if "login" in parts:
        real["login"] = await part_login(profile, runs, stale_entries)
    if "idle" in parts:
        real["idle"] = await part_idle(profile, idle_s)
    return real


PARTS = ("lookups", "login", "idle")


def previous_results() -> dict[str, Any]:
    """The last results file, whose other parts a partial run keeps."""
    path = Path(__file__).resolve().parent / "results" / "directory.json"
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    previous.pop("machine", None)
    return previous if isinstance(previous, dict) else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="50/200 nodes, 20 s idle (< 60 s)")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help="comma-separated subset of lookups,login,idle (the others keep their last results)",
    )
    parser.add_argument("--runs", type=int, default=5, help="login runs per host-cache case")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    if not parts or not parts <= set(PARTS):
        parser.error(f"--parts takes a subset of {','.join(PARTS)}")
    started = time.perf_counter()
    results: dict[str, Any] = {} if parts == set(PARTS) else previous_results()
    if "lookups" in parts:
        sizes = [50, 200] if args.quick else [50, 200, 1000]
        keys = 100 if args.quick else 300
        print(f"part 1: lookups at {sizes} nodes, {keys} keys", flush=True)
        results["lookups"] = part_lookups(sizes, keys, seed=1)
        results["kademlia_version"] = version("kademlia")
        results["latency_model"] = "RTT = distance on a 150 x 150 ms plane + 1 ms"

    if parts & {"login", "idle"}:
        print("\nparts 2-3: starting a login server and 3 supernodes", flush=True)
        with (
            tempfile.TemporaryDirectory(prefix="hopline-bench-") as tmp,
            Cluster(Path(tmp) / "logs") as cluster,
        ):
            workdir = Path(tmp)
            ls, _nodes = start_network(cluster, workdir, supernodes=3)
            real = asyncio.run(
                real_parts(
                    workdir,
                    ls,
                    runs=args.runs,
                    stale_entries=3,
                    idle_s=20.0 if args.quick else 60.0,
                    parts=parts,
                )
            )
        results.update(real)
    seconds = round(time.perf_counter() - started, 1)
    print(f"\ntotal {seconds} s")
    run = {"quick": args.quick, "parts": sorted(parts), "seconds": seconds}  # of this run
    write_json("directory", {**results, **run})


if __name__ == "__main__":
    main()
