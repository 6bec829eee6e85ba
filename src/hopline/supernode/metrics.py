"""A Prometheus endpoint for supernode operators (``--metrics HOST:PORT``).

The HTTP server (from ``prometheus_client``) answers scrapes on its own
thread. To keep it away from state the event loop is changing, the node
publishes an immutable :class:`Snapshot` every second and the collector
only reads the latest one.

Metrics (all prefixed ``hopline_supernode_``): ``members`` (overlay members
seen alive or suspected, this node included), ``records`` (presence records
held), ``lookups_total``, ``connections`` by peer role,
``relayed_messages_total`` (``forward`` envelopes passed on between peers),
``relayed_bytes_total`` (their payload bytes), ``forwarded_total`` (the
same count as ``relayed_messages_total``, its older name), ``dropped_total``
by reason (every datagram, message or envelope refused anywhere in the node;
envelopes that could not be relayed are the ``forward:*`` reasons, relay
drops ``relay:*`` and refused relay requests ``relay-refused:*``). The relay
(:mod:`hopline.supernode.relay_service`) adds ``relay_allocations`` (held
now), ``relay_granted_total`` (allocations granted), ``relay_packets_total`` and
``relay_datagram_bytes_total`` by direction (``in``: from peers to owners,
``out``: from owners to peers). The STUN service (:mod:`hopline.nat.service`)
adds ``stun_bindings_total`` (Binding success responses sent); its drops are
the ``stun:*`` reasons. The offline store
(:mod:`hopline.supernode.offline_service`) adds ``offline_messages`` (sealed
envelopes held now) and ``offline_bytes`` (their ciphertext bytes); its
refusals are the ``offline:*`` reasons.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "hopline_supernode_"


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reports."""

    members: int = 0
    records: int = 0
    lookups: int = 0
    connections: dict[str, int] = field(default_factory=dict)
    forwarded: int = 0
    relayed_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    relay_allocations: int = 0
    relay_counters: dict[str, int] = field(default_factory=dict)
    stun_answered: int = 0
    offline_messages: int = 0
    offline_bytes: int = 0


class SnapshotCollector(Collector):
    """Turns the latest snapshot into metric families."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterator[Metric]:
        """Called by the scrape thread; reads one immutable snapshot."""
        snap = self.snapshot
        yield GaugeMetricFamily(
            PREFIX + "members", "overlay members alive or suspected", snap.members
        )
        connections = GaugeMetricFamily(
            PREFIX + "connections", "secure connections by peer role", labels=["role"]
        )
        for role, count in sorted(snap.connections.items()):
            connections.add_metric([role], count)
        yield connections
        yield GaugeMetricFamily(PREFIX + "records", "presence records held", snap.records)
        yield CounterMetricFamily(PREFIX + "lookups", "directory lookups answered", snap.lookups)
        yield CounterMetricFamily(PREFIX + "forwarded", "envelopes forwarded", snap.forwarded)
        yield CounterMetricFamily(
            PREFIX + "relayed_messages", "forward envelopes relayed between peers", snap.forwarded
        )
        yield CounterMetricFamily(
            PREFIX + "relayed_bytes", "payload bytes of relayed envelopes", snap.relayed_bytes
        )
        yield from _relay_metrics(snap)
        yield CounterMetricFamily(
            PREFIX + "stun_bindings", "STUN Binding requests answered", snap.stun_answered
        )
        yield GaugeMetricFamily(
            PREFIX + "offline_messages", "offline envelopes held", snap.offline_messages
        )
        yield GaugeMetricFamily(
            PREFIX + "offline_bytes", "ciphertext bytes of offline envelopes", snap.offline_bytes
        )
        dropped = CounterMetricFamily(PREFIX + "dropped", "inputs refused", labels=["reason"])
        for reason, count in sorted(snap.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped


def _relay_metrics(snap: Snapshot) -> Iterator[Metric]:
    counters = snap.relay_counters
    yield GaugeMetricFamily(
        PREFIX + "relay_allocations", "relay allocations held", snap.relay_allocations
    )
    yield CounterMetricFamily(
        PREFIX + "relay_granted", "relay allocations granted", counters.get("allocated", 0)
    )
    for what, unit in (("packets", "packets"), ("datagram_bytes", "bytes")):
        family = CounterMetricFamily(
            PREFIX + f"relay_{what}", f"relayed datagram {unit}", labels=["direction"]
        )
        for direction in ("in", "out"):
            family.add_metric([direction], counters.get(f"{unit}_{direction}", 0))
        yield family


def serve_metrics(host: str, port: int) -> tuple[SnapshotCollector, WSGIServer]:
    """Start the HTTP endpoint; return the collector to update and the server."""
    registry = CollectorRegistry()
    collector = SnapshotCollector()
    registry.register(collector)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return collector, server
