"""A deterministic simulator for many :class:`~hopline.overlay.membership.Membership` cores.

:class:`OverlaySim` holds N supernodes on one
:class:`~hopline.testing.simnet.SimNetwork` (a mock clock and an event
queue): every message gets an arrival time (and may be lost or duplicated)
from a seeded :class:`~hopline.testing.lossy.Impairment`, and is routed by
destination address. The loop is a discrete-event simulation: it jumps the
clock to the next delivery or timer (one heap, so a step costs O(log N), not
O(N)), so a simulated hour of a 1,000-node overlay runs in seconds and the
same seed always gives the same run.

With ``wire=True`` every message is encoded with :func:`hopline.wire.encode`
and decoded again on delivery, which checks it travels, lets tests assert the
size bound (:attr:`OverlaySim.largest_message`) and counts bytes.

Churn helpers: :meth:`OverlaySim.add_node` (join through seeds),
:meth:`OverlaySim.crash` (the node falls silent: nothing is delivered to or
from it and its timers stop), :meth:`OverlaySim.isolate` /
:meth:`OverlaySim.reconnect` (a partition: the node runs but is cut off),
:meth:`OverlaySim.leave` (graceful) and :meth:`OverlaySim.restart` (same id,
fresh state, joins again).

Other services can ride on the same nodes and network (as
:class:`~hopline.testing.network_sim.NetworkSim` does with the directory):
messages that are not membership messages go to :attr:`OverlaySim.on_message`,
and each batch of membership events a node produces goes to
:attr:`OverlaySim.on_events`, the way the supernode's shell calls its
services after membership changes.
"""

from __future__ import annotations

import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from hopline.overlay.membership import Membership, MembershipConfig, MembershipEvent
from hopline.testing.clock import MockClock
from hopline.testing.lossy import Impairment, ImpairmentConfig
from hopline.testing.simnet import SimNetwork
from hopline.wire.codec import decode, encode
from hopline.wire.membership import MEMBERSHIP_MESSAGES
from hopline.wire.schema import Message
from hopline.wire.types import Address

__all__ = ["OverlaySim", "SimNode", "TimedEvent"]

_MEMBERSHIP = frozenset(MEMBERSHIP_MESSAGES)


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """A membership event as one node saw it."""

    observer: str
    event: MembershipEvent


@dataclass(slots=True)
class SimNode:
    """One simulated supernode."""

    node_id: str
    address: Address
    core: Membership
    crashed: bool = False
    isolated: bool = False
    timer_at: float | None = None
    """When this node's membership timer is scheduled (stale queue entries are skipped)."""


class OverlaySim:
    """N membership cores, one lossy network, one mock clock; seeded and deterministic."""

    def __init__(
        self,
        *,
        config: MembershipConfig | None = None,
        network: ImpairmentConfig | None = None,
        seed: int = 0,
        wire: bool = False,
        net: SimNetwork | None = None,
        record_events: bool = True,
    ) -> None:
        """An empty overlay; ``network`` defaults to 20 ms +- 10 ms, no loss.

        ``net`` shares an existing network (``network`` is then ignored);
        ``record_events=False`` keeps :attr:`events` empty (large runs).
        """
        self.config = config or MembershipConfig()
        self.rng = random.Random(f"{seed}:sim")
        if net is None:
            network = network or ImpairmentConfig(delay=0.02, jitter=0.01)
            net = SimNetwork(Impairment(network, random.Random(f"{seed}:net")))
        self.net = net
        self.clock: MockClock = net.clock
        self.impairment: Impairment = net.impairment
        self.wire = wire
        self.seed = seed
        self.record_events = record_events
        self.nodes: dict[str, SimNode] = {}
        self.events: list[TimedEvent] = []
        self.messages_sent = 0
        self.bytes_sent = 0
        self.largest_message = 0
        self.sent_by_type: Counter[str] = Counter()
        self.on_message: Callable[[SimNode, Address, Message], None] | None = None
        """Receives messages that are not membership messages (default: the core drops them)."""
        self.on_events: Callable[[SimNode, list[MembershipEvent]], None] | None = None
        """Receives each node's membership events, one batch per handled input."""
        self._by_address: dict[Address, SimNode] = {}
        self._next_host = 1

    # ------------------------------------------------------------ churn

    def new_address(self) -> Address:
        """A fresh address in 10.0.0.0/8."""
        host = ipaddress.IPv4Address(0x0A000000 + self._next_host)
        self._next_host += 1
        return Address(host, 7000)

    def add_node(
        self,
        seeds: list[Address] | None = None,
        *,
        node_id: str | None = None,
        address: Address | None = None,
    ) -> SimNode:
        """Start a supernode and join it through ``seeds`` (none: it starts the overlay)."""
        node_id = node_id or f"sn-{self.rng.getrandbits(64):016x}"
        address = address or self.new_address()
        now = self.clock.now()
        core = Membership(
            node_id,
            address,
            config=self.config,
            rng=random.Random(f"{self.seed}:{node_id}:{now}"),
            now=now,
        )
        node = SimNode(node_id, address, core)
        self.nodes[node_id] = node
        self._by_address[address] = node
        self.net.attach(address, lambda source, payload: self._receive(node, source, payload))
        core.join(list(seeds or []), now)
        self._after(node)
        return node

    def crash(self, node_id: str) -> None:
        """Stop the node dead: no more deliveries to or from it, no timers."""
        self.nodes[node_id].crashed = True

    def isolate(self, node_id: str) -> None:
        """Cut the node off the network (it keeps running: a partition, not a crash)."""
        self.nodes[node_id].isolated = True

    def reconnect(self, node_id: str) -> None:
        """Undo :meth:`isolate`."""
        self.nodes[node_id].isolated = False

    def leave(self, node_id: str) -> None:
        """Make the node leave gracefully (it sends its notices, then stops)."""
        node = self.nodes[node_id]
        node.core.leave(self.clock.now())
        self._after(node)

    def restart(
        self, node_id: str, seeds: list[Address], address: Address | None = None
    ) -> SimNode:
        """Replace a crashed node by a fresh one with the same id (incarnation forgotten)."""
        old = self.nodes[node_id]
        old.crashed = True
        self._by_address.pop(old.address, None)
        self.net.detach(old.address)
        return self.add_node(seeds, node_id=node_id, address=address or old.address)

    def live_nodes(self) -> list[SimNode]:
        """Nodes neither crashed nor left."""
        return [n for n in self.nodes.values() if not n.crashed and not n.core.has_left]

    def reachable(self, address: Address) -> SimNode | None:
        """The node at ``address`` if it is up and connected, else None."""
        node = self._by_address.get(address)
        if node is None or node.crashed or node.isolated:
            return None
        return node

    # ------------------------------------------------------------ running

    def converged(self) -> bool:
        """Every live node sees every other live node alive (and nothing else live)."""
        live = self.live_nodes()
        want = len(live) - 1
        return all(n.core.alive_count == want and n.core.live_count == want for n in live)

    def run_until(
        self, predicate: Callable[[], bool], timeout: float, check_every: float = 0.05
    ) -> bool:
        """Run until ``predicate()`` holds (True) or ``timeout`` simulated seconds pass."""
        return self.net.run_until(predicate, timeout, check_every)

    def run_for(self, duration: float) -> None:
        """Run ``duration`` simulated seconds whatever happens."""
        self.net.run_for(duration)

    def first_event(
        self, kind: type[MembershipEvent], about: str, observer: str | None = None
    ) -> list[TimedEvent]:
        """Events of ``kind`` about node ``about`` (optionally seen by ``observer``)."""
        return [
            e
            for e in self.events
            if isinstance(e.event, kind)
            and e.event.member.node_id == about
            and (observer is None or e.observer == observer)
        ]

    # ------------------------------------------------------------ internals

    def _receive(self, node: SimNode, source: Address, payload: object) -> None:
        """A delivery to ``node``: dropped if either end is down or cut off."""
        if node.crashed or node.isolated:
            return
        sender = self._by_address.get(source)
        if sender is not None and (sender.crashed or sender.isolated):
            return
        message = decode(payload) if isinstance(payload, bytes) else payload
        assert isinstance(message, Message)
        if type(message) not in _MEMBERSHIP and self.on_message is not None:
            self.on_message(node, source, message)
            return
        node.core.receive(source, message, self.clock.now())
        self._after(node)

    def _on_timer(self, item: tuple[SimNode, float]) -> None:
        node, when = item
        if node.crashed or node.timer_at != when:
            return  # superseded by a later schedule, or the node is gone
        node.timer_at = None
        node.core.handle_timer(self.clock.now())
        self._after(node)

    def _after(self, node: SimNode) -> None:
        """Send what ``node`` wants to send, pass on its events, reschedule its timer."""
        if node.crashed:
            return
        core = node.core
        now = self.clock.now()
        for destination, message in core.messages_to_send(now):
            self._transmit(node.address, destination, message)
        events: list[MembershipEvent] = []
        while (event := core.next_event()) is not None:
            events.append(event)
        if events:
            if self.record_events:
                self.events.extend(TimedEvent(node.node_id, e) for e in events)
            if self.on_events is not None:
                self.on_events(node, events)
        timer = core.get_timer()
        if timer is not None and node.timer_at != timer:
            node.timer_at = timer
            self.net.call_at(timer, self._on_timer, (node, timer))

    def _transmit(self, source: Address, destination: Address, message: Message) -> None:
        self.messages_sent += 1
        self.sent_by_type[type(message).__name__] += 1
        payload: Message | bytes = message
        if self.wire:
            payload = encode(message)
            self.bytes_sent += len(payload)
            self.largest_message = max(self.largest_message, len(payload))
        self.net.send(source, destination, payload)
