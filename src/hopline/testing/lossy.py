"""A seeded model of a bad network path, and a deterministic two-link simulator.

:class:`Impairment` decides, for each datagram offered to a path, when (if
ever) it arrives, and how many copies: independent loss *or* Gilbert-Elliott
bursty loss, fixed delay plus uniform jitter, occasional reordering (an
extra delay that lets later datagrams overtake) and duplication. Every
random draw comes from the ``random.Random`` it is given, so a seed fixes the
whole run. The same model drives the sans-I/O :class:`FakeNet` here and the
real-socket :class:`~hopline.testing.forwarder.ImpairingForwarder`.

Gilbert-Elliott: the path is in a *good* or *bad* state; before each datagram
it moves good->bad with probability ``p_good_to_bad`` and bad->good with
``p_bad_to_good``, then loses the datagram with ``loss_good`` / ``loss_bad``.
With ``loss_good = 0`` and ``loss_bad = 1`` a loss burst lasts on average
``1 / p_bad_to_good`` datagrams and the long-run loss rate is
``p_gb / (p_gb + p_bg)``; :meth:`GilbertElliott.from_loss` solves for the two
probabilities from a loss rate and a mean burst length.

:class:`FakeNet` connects two :class:`~hopline.transport.link.Link` objects
through two such paths under a :class:`~hopline.testing.clock.MockClock` and
pumps them -- datagrams out, impaired delivery, timers, events -- jumping the
clock straight to the next thing that can happen, until both links are idle
or a deadline passes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from hopline.testing.clock import MockClock
from hopline.transport.link import Link, LinkEvent, MessageReceived

__all__ = [
    "FakeNet",
    "GilbertElliott",
    "Impairment",
    "ImpairmentConfig",
    "ImpairmentStats",
    "LossyPath",
]


@dataclass(frozen=True, slots=True)
class GilbertElliott:
    """Two-state bursty loss model."""

    p_good_to_bad: float
    p_bad_to_good: float
    loss_good: float = 0.0
    loss_bad: float = 1.0

    def __post_init__(self) -> None:
        """Refuse probabilities outside [0, 1] and a bad state that can never be left."""
        values = (self.p_good_to_bad, self.p_bad_to_good, self.loss_good, self.loss_bad)
        if not all(0.0 <= p <= 1.0 for p in values) or self.p_bad_to_good == 0.0:
            raise ValueError(f"invalid Gilbert-Elliott parameters {values}")

    @classmethod
    def from_loss(cls, loss_rate: float, mean_burst: float) -> GilbertElliott:
        """Parameters giving ``loss_rate`` overall in bursts of ``mean_burst`` datagrams."""
        if not 0.0 <= loss_rate < 1.0 or mean_burst < 1.0:
            raise ValueError("need 0 <= loss_rate < 1 and mean_burst >= 1")
        p_bad_to_good = 1.0 / mean_burst
        p_good_to_bad = loss_rate * p_bad_to_good / (1.0 - loss_rate)
        return cls(min(1.0, p_good_to_bad), p_bad_to_good)

    @property
    def mean_loss(self) -> float:
        """Long-run fraction of datagrams lost."""
        total = self.p_good_to_bad + self.p_bad_to_good
        bad = self.p_good_to_bad / total
        return (1.0 - bad) * self.loss_good + bad * self.loss_bad


@dataclass(frozen=True, slots=True)
class ImpairmentConfig:
    """What a path does to datagrams. All probabilities are per datagram."""

    drop: float = 0.0
    """Independent loss probability (ignored when ``burst`` is set)."""
    duplicate: float = 0.0
    reorder: float = 0.0
    """Probability of holding a datagram ``reorder_delay`` longer than the rest."""
    reorder_delay: float = 0.005
    delay: float = 0.0
    """Fixed one-way delay, seconds."""
    jitter: float = 0.0
    """Extra uniform random delay in [0, jitter) seconds."""
    burst: GilbertElliott | None = None

    def __post_init__(self) -> None:
        """Refuse probabilities outside [0, 1] and negative delays."""
        probabilities = (self.drop, self.duplicate, self.reorder)
        if not all(0.0 <= p <= 1.0 for p in probabilities):
            raise ValueError(f"probabilities must be in [0, 1]: {probabilities}")
        if min(self.reorder_delay, self.delay, self.jitter) < 0:
            raise ValueError("delays must be >= 0")

    @classmethod
    def bursty(cls, loss_rate: float, mean_burst: float, **kwargs: float) -> ImpairmentConfig:
        """A Gilbert-Elliott path losing ``loss_rate`` in bursts of ``mean_burst`` on average."""
        return cls(burst=GilbertElliott.from_loss(loss_rate, mean_burst), **kwargs)


@dataclass(slots=True)
class ImpairmentStats:
    """What an :class:`Impairment` did so far."""

    offered: int = 0
    dropped: int = 0
    delivered: int = 0
    """Copies scheduled for delivery (duplicates included)."""
    duplicated: int = 0
    reordered: int = 0


class Impairment:
    """Applies an :class:`ImpairmentConfig` with a seeded random generator."""

    def __init__(self, config: ImpairmentConfig, rng: random.Random) -> None:
        """Use ``rng`` for every decision (pass ``random.Random(seed)``)."""
        self.config = config
        self.stats = ImpairmentStats()
        self._rng = rng
        self._bad = False

    def schedule(self, now: float) -> list[float]:
        """Arrival times for one datagram offered at ``now``: [] if lost, two if duplicated."""
        self.stats.offered += 1
        if self._lose():
            self.stats.dropped += 1
            return []
        cfg, rng = self.config, self._rng
        arrival = now + cfg.delay + (rng.uniform(0.0, cfg.jitter) if cfg.jitter else 0.0)
        if cfg.reorder and rng.random() < cfg.reorder:
            arrival += cfg.reorder_delay
            self.stats.reordered += 1
        times = [arrival]
        if cfg.duplicate and rng.random() < cfg.duplicate:
            spread = max(cfg.jitter, cfg.reorder_delay)
            times.append(arrival + rng.uniform(0.0, spread))
            self.stats.duplicated += 1
        self.stats.delivered += len(times)
        return times

    def _lose(self) -> bool:
        burst = self.config.burst
        if burst is None:
            return bool(self.config.drop) and self._rng.random() < self.config.drop
        flip = burst.p_bad_to_good if self._bad else burst.p_good_to_bad
        if self._rng.random() < flip:
            self._bad = not self._bad
        loss = burst.loss_bad if self._bad else burst.loss_good
        return self._rng.random() < loss


@dataclass(order=True, slots=True)
class _InFlight:
    arrival: float
    order: int
    data: bytes = field(compare=False)


class LossyPath:
    """One direction of a simulated path: datagrams in, impaired datagrams out when due."""

    def __init__(self, impairment: Impairment) -> None:
        """Carry datagrams through ``impairment``."""
        self.impairment = impairment
        self._heap: list[_InFlight] = []
        self._order = 0

    def __len__(self) -> int:
        """Datagram copies still travelling."""
        return len(self._heap)

    @property
    def next_arrival(self) -> float | None:
        """When the next copy arrives, or None."""
        return self._heap[0].arrival if self._heap else None

    def submit(self, datagram: bytes, now: float) -> None:
        """Offer one datagram to the path at ``now``."""
        for arrival in self.impairment.schedule(now):
            heapq.heappush(self._heap, _InFlight(arrival, self._order, datagram))
            self._order += 1

    def pop_due(self, now: float) -> list[bytes]:
        """Every copy whose arrival time is <= ``now``, in arrival order."""
        due = []
        while self._heap and self._heap[0].arrival <= now:
            due.append(heapq.heappop(self._heap).data)
        return due


_MAX_STALLED_STEPS = 1000


class FakeNet:
    """Two links, two impaired paths, one mock clock; fully deterministic for a given seed."""

    def __init__(
        self,
        a: Link,
        b: Link,
        *,
        clock: MockClock | None = None,
        a_to_b: ImpairmentConfig | None = None,
        b_to_a: ImpairmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        """Connect ``a`` and ``b``; each direction gets its own seeded generator."""
        self.a, self.b = a, b
        self.clock = clock or MockClock()
        self.a_to_b = LossyPath(
            Impairment(a_to_b or ImpairmentConfig(), random.Random(f"{seed}:a->b"))
        )
        self.b_to_a = LossyPath(
            Impairment(b_to_a or ImpairmentConfig(), random.Random(f"{seed}:b->a"))
        )
        self.a_events: list[LinkEvent] = []
        self.b_events: list[LinkEvent] = []
        self.steps = 0

    @property
    def a_messages(self) -> list[bytes]:
        """Payloads of the messages ``a`` received, in delivery order."""
        return [e.data for e in self.a_events if isinstance(e, MessageReceived)]

    @property
    def b_messages(self) -> list[bytes]:
        """Payloads of the messages ``b`` received, in delivery order."""
        return [e.data for e in self.b_events if isinstance(e, MessageReceived)]

    @property
    def idle(self) -> bool:
        """Both links quiescent and nothing travelling."""
        return self.a.quiescent and self.b.quiescent and not self.a_to_b and not self.b_to_a

    def step(self) -> None:
        """Do everything due at the current time: send, deliver, fire timers, collect events."""
        now = self.clock.now()
        self._flush(now)
        for path, dest in ((self.a_to_b, self.b), (self.b_to_a, self.a)):
            for datagram in path.pop_due(now):
                dest.receive_datagram(datagram, now)
        for link in (self.a, self.b):
            timer = link.get_timer()
            if timer is not None and timer <= now:
                link.handle_timer(now)
        self._collect()
        self._flush(now)
        self.steps += 1

    def next_time(self) -> float | None:
        """When something next happens (a delivery or a timer), or None."""
        times = [
            self.a_to_b.next_arrival,
            self.b_to_a.next_arrival,
            self.a.get_timer(),
            self.b.get_timer(),
        ]
        present = [t for t in times if t is not None]
        return min(present) if present else None

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Pump until ``predicate()`` holds (True) or ``timeout`` simulated seconds pass (False)."""
        deadline = self.clock.now() + timeout
        stalled = 0
        while True:
            before = self.clock.now()
            self.step()
            if predicate():
                return True
            upcoming = self.next_time()
            if upcoming is None or upcoming > deadline:
                self.clock.advance_to(deadline)
                return False
            self.clock.advance_to(upcoming)
            stalled = stalled + 1 if self.clock.now() == before else 0
            if stalled > _MAX_STALLED_STEPS:
                raise RuntimeError(f"simulation stuck at t={before}")

    def run_until_idle(self, timeout: float = 60.0) -> bool:
        """Pump until both links are idle (True) or ``timeout`` simulated seconds pass (False)."""
        return self.run_until(lambda: self.idle, timeout)

    def run_for(self, duration: float) -> None:
        """Pump for ``duration`` simulated seconds whatever happens."""
        self.run_until(lambda: False, duration)

    def _flush(self, now: float) -> None:
        for link, path in ((self.a, self.a_to_b), (self.b, self.b_to_a)):
            for datagram in link.datagrams_to_send(now):
                path.submit(datagram, now)

    def _collect(self) -> None:
        for link, sink in ((self.a, self.a_events), (self.b, self.b_events)):
            while (event := link.next_event()) is not None:
                sink.append(event)
