"""Deterministic two-peer connection tests: :class:`ConnectionPair`.

A client :class:`~hopline.connection.Connection` and a server side that
accepts the client's init (as an endpoint would), joined by two seeded
:class:`~hopline.testing.lossy.LossyPath` directions under a
:class:`~hopline.testing.clock.MockClock`. :meth:`ConnectionPair.run_until`
pumps datagrams, timers and events, jumping the clock to the next thing that
can happen, so a test of a lossy handshake or ten thousand requests runs in
milliseconds and repeats exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hopline.connection import Connection, ConnectionConfig, ConnectionEvent, Expectation
from hopline.connection.handshake import FramingError
from hopline.crypto import CryptoError
from hopline.crypto.noise import DHKeyPair
from hopline.identity import CertificateVerifier
from hopline.testing.clock import MockClock
from hopline.testing.lossy import Impairment, ImpairmentConfig, LossyPath

MAX_STALLED_STEPS = 1000


@dataclass
class Side:
    """What the server side needs to accept a connection."""

    static: DHKeyPair
    certificate: bytes | None
    verifier: CertificateVerifier | None
    expect: Expectation


@dataclass
class ConnectionPair:
    """A client connection and the server connection it creates, on a simulated path."""

    client: Connection
    server_side: Side
    to_server: LossyPath
    to_client: LossyPath
    clock: MockClock
    config: ConnectionConfig | None = None
    server: Connection | None = None
    client_events: list[ConnectionEvent] = field(default_factory=list)
    server_events: list[ConnectionEvent] = field(default_factory=list)
    refused_inits: int = 0
    tamper: Callable[[bytes], bytes] | None = None

    @classmethod
    def create(
        cls,
        client: Side,
        server: Side,
        *,
        path: ImpairmentConfig | None = None,
        seed: int = 1,
        config: ConnectionConfig | None = None,
        start: float = 1_000_000.0,
    ) -> ConnectionPair:
        """Start the client's handshake towards the server side at time ``start``."""
        clock = MockClock(start)
        rng = random.Random(seed)
        path = path or ImpairmentConfig()
        connection = Connection(
            initiator=True,
            static=client.static,
            certificate=client.certificate,
            verifier=client.verifier,
            expect=client.expect,
            now=clock.now(),
            config=config,
            random_bytes=rng.randbytes,
        )
        return cls(
            client=connection,
            server_side=server,
            to_server=LossyPath(Impairment(path, random.Random(rng.random()))),
            to_client=LossyPath(Impairment(path, random.Random(rng.random()))),
            clock=clock,
            config=config,
        )

    def _deliver_to_server(self, data: bytes, now: float) -> None:
        if self.tamper is not None:
            data = self.tamper(data)
        if self.server is not None and self.server.receive_datagram(data, now):
            return
        side = self.server_side
        try:
            self.server = Connection.accept(
                data,
                static=side.static,
                certificate=side.certificate,
                verifier=side.verifier,
                expect=side.expect,
                now=now,
                config=self.config,
            )
        except (FramingError, CryptoError):
            self.refused_inits += 1

    def step(self) -> None:
        """Move every datagram that is due, run timers, collect events."""
        now = self.clock.now()
        for data in self.to_server.pop_due(now):
            self._deliver_to_server(data, now)
        for data in self.to_client.pop_due(now):
            self.client.receive_datagram(data, now)
        for conn in (self.client, self.server):
            if conn is not None:
                timer = conn.get_timer()
                if timer is not None and timer <= now:
                    conn.handle_timer(now)
        for data in self.client.datagrams_to_send(now):
            self.to_server.submit(data, now)
        if self.server is not None:
            for data in self.server.datagrams_to_send(now):
                self.to_client.submit(data, now)
        self._collect()

    def _collect(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
        while self.server is not None and (event := self.server.next_event()) is not None:
            self.server_events.append(event)

    def _next_time(self) -> float | None:
        times = [self.to_server.next_arrival, self.to_client.next_arrival]
        times += [c.get_timer() for c in (self.client, self.server) if c is not None]
        due = [t for t in times if t is not None]
        return min(due) if due else None

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Pump until ``predicate()`` holds or ``timeout`` simulated seconds pass."""
        deadline = self.clock.now() + timeout
        stalled = 0
        while not predicate():
            self.step()
            if predicate():
                return True
            upcoming = self._next_time()
            if upcoming is None or upcoming > deadline:
                return predicate()
            stalled = stalled + 1 if upcoming <= self.clock.now() else 0
            if stalled > MAX_STALLED_STEPS:
                raise RuntimeError("a timer stays due without progress (a bug in a core)")
            self.clock.advance_to(upcoming)
        return True
