"""A deterministic simulator for many :class:`~hopline.overlay.membership.Membership` cores.

:class:`OverlaySim` holds N supernodes, a :class:`MockClock` and one
simulated network: every message gets an arrival time (and may be lost or
duplicated) from a seeded :class:`~hopline.testing.lossy.Impairment`, and is
routed by destination address. The loop is a discrete-event simulation: it
jumps the clock to the next delivery or timer (timers live in a heap, so a
step costs O(log N), not O(N)), so a simulated hour of a 1,000-node overlay
runs in seconds and the same seed always gives the same run.

With ``wire=True`` every message is encoded with :func:`hopline.wire.encode`
and decoded again on delivery, which checks it travels, lets tests assert the
size bound (:attr:`OverlaySim.largest_message`) and counts bytes.

Churn helpers: :meth:`OverlaySim.add_node` (join through seeds),
:meth:`OverlaySim.crash` (the node falls silent: nothing is delivered to or
from it and its timers stop), :meth:`OverlaySim.isolate` /
:meth:`OverlaySim.reconnect` (a partition: the node runs but is cut off),
:meth:`OverlaySim.leave` (graceful) and :meth:`OverlaySim.restart` (same id,
fresh state, joins again).
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from hopline.overlay.membership import Membership, MembershipConfig, MembershipEvent
from hopline.testing.clock import MockClock
from hopline.testing.lossy import Impairment, ImpairmentConfig
from hopline.wire.codec import decode, encode
from hopline.wire.schema import Message
from hopline.wire.types import Address

__all__ = ["OverlaySim", "SimNode", "TimedEvent"]


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


@dataclass(order=True, slots=True)
class _Delivery:
    arrival: float
    order: int
    source: Address = field(compare=False)
    destination: Address = field(compare=False)
    payload: Message | bytes = field(compare=False)


class OverlaySim:
    """N membership cores, one lossy network, one mock clock; seeded and deterministic."""

    def __init__(
        self,
        *,
        config: MembershipConfig | None = None,
        network: ImpairmentConfig | None = None,
        seed: int = 0,
        wire: bool = False,
    ) -> None:
        """An empty overlay; ``network`` defaults to 20 ms +- 10 ms, no loss."""
        self.config = config or MembershipConfig()
        self.clock = MockClock()
        self.rng = random.Random(f"{seed}:sim")
        network = network or ImpairmentConfig(delay=0.02, jitter=0.01)
        self.impairment = Impairment(network, random.Random(f"{seed}:net"))
        self.wire = wire
        self.seed = seed
        self.nodes: dict[str, SimNode] = {}
        self.events: list[TimedEvent] = []
        self.messages_sent = 0
        self.bytes_sent = 0
        self.largest_message = 0
        self.sent_by_type: Counter[str] = Counter()
        self._by_address: dict[Address, SimNode] = {}
        self._in_flight: list[_Delivery] = []
        self._timers: list[tuple[float, int, str]] = []
        self._scheduled: dict[str, float] = {}
        self._order = 0
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
        return self.add_node(seeds, node_id=node_id, address=address or old.address)

    def live_nodes(self) -> list[SimNode]:
        """Nodes neither crashed nor left."""
        return [n for n in self.nodes.values() if not n.crashed and not n.core.has_left]

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
        deadline = self.clock.now() + timeout
        next_check = self.clock.now()
        while True:
            if self.clock.now() >= next_check:
                if predicate():
                    return True
                next_check = self.clock.now() + check_every
            upcoming = self._next_time()
            if upcoming is None or upcoming > deadline:
                self.clock.advance_to(deadline)
                return predicate()
            self.clock.advance_to(upcoming)
            self._step()

    def run_for(self, duration: float) -> None:
        """Run ``duration`` simulated seconds whatever happens."""
        self.run_until(lambda: False, duration, check_every=duration)

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

    def _next_time(self) -> float | None:
        self._drop_stale_timers()
        times = []
        if self._in_flight:
            times.append(self._in_flight[0].arrival)
        if self._timers:
            times.append(self._timers[0][0])
        return min(times) if times else None

    def _drop_stale_timers(self) -> None:
        while self._timers:
            when, _, node_id = self._timers[0]
            node = self.nodes[node_id]
            if self._scheduled.get(node_id) == when and not node.crashed:
                return
            heapq.heappop(self._timers)

    def _step(self) -> None:
        now = self.clock.now()
        touched: dict[str, SimNode] = {}
        while self._in_flight and self._in_flight[0].arrival <= now:
            delivery = heapq.heappop(self._in_flight)
            node = self._deliver(delivery, now)
            if node is not None:
                touched[node.node_id] = node
        while self._timers and self._timers[0][0] <= now:
            when, _, node_id = heapq.heappop(self._timers)
            node = self.nodes[node_id]
            if node.crashed or self._scheduled.get(node_id) != when:
                continue
            del self._scheduled[node_id]
            node.core.handle_timer(now)
            touched[node_id] = node
        for node in touched.values():
            self._after(node)

    def _deliver(self, delivery: _Delivery, now: float) -> SimNode | None:
        node = self._by_address.get(delivery.destination)
        sender = self._by_address.get(delivery.source)
        if node is None or node.crashed or node.isolated:
            return None
        if sender is not None and (sender.crashed or sender.isolated):
            return None
        payload = delivery.payload
        message = decode(payload) if isinstance(payload, bytes) else payload
        node.core.receive(delivery.source, message, now)
        return node

    def _after(self, node: SimNode) -> None:
        """Send what ``node`` wants to send, record its events, reschedule its timer."""
        if node.crashed:
            return
        now = self.clock.now()
        for destination, message in node.core.messages_to_send(now):
            self._transmit(node.address, destination, message, now)
        while (event := node.core.next_event()) is not None:
            self.events.append(TimedEvent(node.node_id, event))
        timer = node.core.get_timer()
        if timer is not None and self._scheduled.get(node.node_id) != timer:
            self._scheduled[node.node_id] = timer
            heapq.heappush(self._timers, (timer, self._bump(), node.node_id))

    def _transmit(
        self, source: Address, destination: Address, message: Message, now: float
    ) -> None:
        self.messages_sent += 1
        self.sent_by_type[type(message).__name__] += 1
        payload: Message | bytes = message
        if self.wire:
            payload = encode(message)
            self.bytes_sent += len(payload)
            self.largest_message = max(self.largest_message, len(payload))
        for arrival in self.impairment.schedule(now):
            delivery = _Delivery(arrival, self._bump(), source, destination, payload)
            heapq.heappush(self._in_flight, delivery)

    def _bump(self) -> int:
        self._order += 1
        return self._order
