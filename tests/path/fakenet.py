"""A deterministic simulated internet for two PathCheckers, with NATs and relays.

Each :class:`Peer` has a private IPv4 address behind an optional
:class:`~hopline.testing.fakenat.FakeNat` (or a public one without NAT), an
optional public IPv6 address (never NATed), a relay allocation on its
supernode (a public address: datagrams sent on the ``relay:1`` /
``tcp-relay:1`` base leave from it, datagrams to it arrive on that base), and
may have UDP blocked (its ``udp`` base neither sends nor receives).

:class:`FakeNet` is a discrete-event loop over one simulated clock: datagrams
take ``latency`` per hop (two hops through a relay) and are lost with
probability ``loss`` (seeded), timers fire when the
checkers ask, and nothing depends on wall-clock time.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from hopline.path.candidates import Candidate, from_endpoint, gather, to_endpoint
from hopline.path.checks import CheckConfig, PathChecker, PathEvent, PathSelected
from hopline.testing.fakenat import FakeNat
from hopline.wire.types import Address

STUN_SERVER = Address.of("198.51.100.1", 3478)


@dataclass
class Peer:
    """One endpoint of the simulated network."""

    name: str
    private: Address
    nat: FakeNat | None = None
    v6: Address | None = None
    relay: Address | None = None
    relay_base: str = "relay:1"
    blocked: bool = False
    checker: PathChecker | None = None
    events: list[PathEvent] = field(default_factory=list)
    start_at: float = 0.0
    received: int = 0
    not_ours: int = 0

    def srflx(self) -> Address | None:
        """The server-reflexive address a STUN server would report."""
        if self.blocked or self.nat is None:
            return None
        return Address.of(*self.nat.outbound(self.private.as_tuple(), STUN_SERVER.as_tuple()))

    def candidates(self, *, with_srflx: bool = True) -> list[Candidate]:
        """What this peer gathers and signals."""
        hosts = [self.private] + ([self.v6] if self.v6 is not None else [])
        relayed = [(self.relay, self.relay_base)] if self.relay is not None else []
        srflx = self.srflx() if with_srflx else None
        return gather(hosts, srflx, relayed)

    @property
    def selections(self) -> list[PathSelected]:
        """Every PathSelected this peer reported, in order."""
        return [e for e in self.events if isinstance(e, PathSelected)]


@dataclass(order=True)
class _Arrival:
    at: float
    seq: int
    source: Address = field(compare=False)
    dest: Address = field(compare=False)
    data: bytes = field(compare=False)


class FakeNet:
    """Routes datagrams between peers through their NATs and relays."""

    def __init__(
        self, peers: list[Peer], latency: float = 0.01, loss: float = 0.0, seed: int = 0
    ) -> None:
        self.peers = peers
        self.latency = latency
        self.loss = loss
        self.lost = 0
        self._rng = random.Random(seed)
        self.now = 0.0
        self.sent: list[tuple[float, str, str, Address, bytes]] = []
        self._queue: list[_Arrival] = []
        self._seq = itertools.count()

    # ---------------------------------------------------------- routing

    def send(self, peer: Peer, base: str, dest: Address, data: bytes) -> None:
        """A datagram from ``peer`` on ``base`` to ``dest``."""
        self.sent.append((self.now, peer.name, base, dest, data))
        if base == peer.relay_base and peer.relay is not None:
            self._route(peer.relay, dest, data, hops=2)
            return
        if base != "udp" or peer.blocked:
            return
        if dest.family == 6:
            if peer.v6 is not None:
                self._route(peer.v6, dest, data, hops=1)
            return
        source = peer.private
        if peer.nat is not None:
            source = Address.of(*peer.nat.outbound(peer.private.as_tuple(), dest.as_tuple()))
        self._route(source, dest, data, hops=1)

    def _route(self, source: Address, dest: Address, data: bytes, hops: int) -> None:
        if self.loss and self._rng.random() < self.loss:
            self.lost += 1
            return
        at = self.now + hops * self.latency
        heapq.heappush(self._queue, _Arrival(at, next(self._seq), source, dest, data))

    def _resolve(self, source: Address, dest: Address) -> tuple[Peer, str] | None:
        for peer in self.peers:
            if peer.relay == dest:
                return (peer, peer.relay_base)
            if peer.blocked:
                continue
            if peer.v6 == dest:
                return (peer, "udp")
            if peer.nat is None and peer.private == dest:
                return (peer, "udp")
            if peer.nat is not None and str(dest.host) == peer.nat.public_ip:
                inside = peer.nat.inbound(source.as_tuple(), dest.as_tuple())
                return None if inside is None else (peer, "udp")
        return None

    # ---------------------------------------------------------- the loop

    def _flush(self) -> None:
        for peer in self.peers:
            assert peer.checker is not None
            if self.now < peer.start_at:
                continue
            for base, dest, data in peer.checker.datagrams_to_send(self.now):
                self.send(peer, base, dest, data)
            while (event := peer.checker.next_event()) is not None:
                peer.events.append(event)

    def _next_time(self) -> float | None:
        times = [self._queue[0].at] if self._queue else []
        for peer in self.peers:
            assert peer.checker is not None
            timer = peer.checker.get_timer()
            if timer is not None:
                times.append(timer)
        return min(times) if times else None

    def run(self, until: float, max_steps: int = 200_000) -> None:
        """Advance the simulation to ``until`` seconds."""
        for _ in range(max_steps):
            self._flush()
            next_time = self._next_time()
            if next_time is None or next_time > until:
                self.now = until
                self._flush()
                return
            self.now = max(self.now, next_time)
            self._step()
        raise AssertionError("the simulation did not settle (timer loop?)")

    def _step(self) -> None:
        while self._queue and self._queue[0].at <= self.now:
            item = heapq.heappop(self._queue)
            target = self._resolve(item.source, item.dest)  # NATs filter on arrival
            if target is None:
                continue
            peer, base = target
            assert peer.checker is not None
            if self.now < peer.start_at:
                peer.not_ours += 1  # no checker yet: the shell drops it
            elif peer.checker.receive(item.data, base, item.source, self.now):
                peer.received += 1
            else:
                peer.not_ours += 1
        for peer in self.peers:
            assert peer.checker is not None
            timer = peer.checker.get_timer()
            if timer is not None and peer.start_at <= timer <= self.now:
                peer.checker.handle_timer(self.now)


def signalled(candidates: list[Candidate]) -> list[Candidate]:
    """Candidates as the peer receives them: through ``Endpoint`` records."""
    return [from_endpoint(to_endpoint(c)) for c in candidates]


def connect(
    a: Peer,
    b: Peer,
    *,
    key: bytes = b"k" * 32,
    a_remote: list[Candidate] | None = None,
    b_remote: list[Candidate] | None = None,
    loss: float = 0.0,
    seed: int = 0,
    b_start: float = 0.0,
    **config_kwargs: object,
) -> FakeNet:
    """Two checkers, ``a`` controlling, each knowing the other's candidates.

    ``b`` starts ``b_start`` seconds later (the offer's trip through signalling).
    """
    config = CheckConfig(**config_kwargs)  # type: ignore[arg-type]
    a_local, b_local = a.candidates(), b.candidates()
    if a_remote is None:
        a_remote = b_local
    if b_remote is None:
        b_remote = a_local
    a.checker = PathChecker(
        controlling=True,
        local_ufrag="ua",
        remote_ufrag="ub",
        key=key,
        local=a_local,
        remote=signalled(a_remote),
        now=0.0,
        config=config,
    )
    b.checker = PathChecker(
        controlling=False,
        local_ufrag="ub",
        remote_ufrag="ua",
        key=key,
        local=b_local,
        remote=signalled(b_remote),
        now=b_start,
        config=config,
    )
    b.start_at = b_start
    return FakeNet([a, b], loss=loss, seed=seed)
