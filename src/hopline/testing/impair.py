"""A seeded, deterministic impairment channel for voice tests and benchmarks (sans-I/O).

:class:`ImpairedChannel` is one direction of a bad network path: datagrams go
in with :meth:`ImpairedChannel.send` at a simulated time ``now`` and come out
of :meth:`ImpairedChannel.deliver` once their arrival time has passed. It
never sleeps and owns no socket or clock; every random draw comes from one
``random.Random(seed)``, so a seed fixes the whole run.

What an :class:`Impairment` does to each datagram, in this order:

* **loss** — with ``burst == 1`` each datagram is lost independently with
  probability ``loss``. With ``burst > 1`` loss follows a two-state
  Gilbert-Elliott chain: datagrams are lost only in the *bad* state and
  always delivered in the *good* one. Before each datagram the chain moves
  good->bad with probability ``p`` and bad->good with probability ``r``.
  A loss burst (a stay in the bad state) then lasts ``1 / r`` datagrams on
  average and the long-run loss is ``p / (p + r)``, so
  ``r = 1 / burst`` and ``p = loss * r / (1 - loss)``;
* **delay** — a fixed ``delay_ms`` plus a uniform random extra delay in
  ``[0, jitter_ms)``. Each datagram draws its own extra delay, so with
  jitter larger than the sending interval later datagrams overtake earlier
  ones (reordering), as on a real path with variable queueing.

:meth:`ImpairedChannel.deliver` returns due datagrams in arrival order (ties
in sending order), and :meth:`ImpairedChannel.next_arrival` lets a simulation
jump its clock to the next delivery.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass

__all__ = ["ImpairedChannel", "Impairment", "gilbert_elliott_probabilities"]


@dataclass(frozen=True)
class Impairment:
    """What one direction of a path does to datagrams (see the module docs)."""

    loss: float = 0.0
    """Mean packet loss fraction, 0..1."""
    burst: float = 1.0
    """Mean loss-burst length in packets: 1 is independent loss, > 1 Gilbert-Elliott."""
    jitter_ms: float = 0.0
    """Extra one-way delay, uniform random in [0, jitter_ms); reorders datagrams."""
    delay_ms: float = 0.0
    """Fixed one-way delay."""
    seed: int = 1

    def __post_init__(self) -> None:
        """Refuse values outside their ranges with a :class:`ValueError`."""
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be in [0, 1], not {self.loss!r}")
        if not self.burst >= 1.0 or math.isinf(self.burst):
            raise ValueError(f"burst must be a finite number >= 1, not {self.burst!r}")
        for name in ("jitter_ms", "delay_ms"):
            value = getattr(self, name)
            if not 0.0 <= value < math.inf:
                raise ValueError(f"{name} must be finite and >= 0, not {value!r}")


def gilbert_elliott_probabilities(loss: float, burst: float) -> tuple[float, float]:
    """``(p_good_to_bad, p_bad_to_good)`` giving long-run ``loss`` in bursts of ``burst``.

    Requires ``0 <= loss < 1`` and ``burst >= 1``; ``p_good_to_bad`` is capped
    at 1 (then the loss rate cannot be reached with bursts that short).
    """
    if not 0.0 <= loss < 1.0 or burst < 1.0:
        raise ValueError("need 0 <= loss < 1 and burst >= 1")
    p_bad_to_good = 1.0 / burst
    p_good_to_bad = min(1.0, loss * p_bad_to_good / (1.0 - loss))
    return p_good_to_bad, p_bad_to_good


class ImpairedChannel:
    """One direction of an impaired path: ``send`` datagrams in, ``deliver`` them when due."""

    def __init__(self, impairment: Impairment) -> None:
        """Start empty, in the good state, with ``random.Random(impairment.seed)``."""
        self.impairment = impairment
        self._rng = random.Random(impairment.seed)
        self._bad = False
        self._transitions: tuple[float, float] | None = None
        if impairment.burst > 1.0 and impairment.loss < 1.0:
            self._transitions = gilbert_elliott_probabilities(impairment.loss, impairment.burst)
        self._queue: list[tuple[float, int, bytes]] = []
        self._order = 0
        self.sent = 0
        self.dropped = 0
        self.delivered = 0

    def send(self, data: bytes, now: float) -> None:
        """Offer one datagram at ``now`` (seconds); it is lost or scheduled for arrival."""
        self.sent += 1
        if self._lose():
            self.dropped += 1
            return
        imp = self.impairment
        extra_ms = self._rng.uniform(0.0, imp.jitter_ms) if imp.jitter_ms else 0.0
        arrival = now + (imp.delay_ms + extra_ms) / 1000.0
        heapq.heappush(self._queue, (arrival, self._order, bytes(data)))
        self._order += 1

    def deliver(self, now: float) -> list[bytes]:
        """Datagrams whose arrival time is at or before ``now``, in arrival order."""
        due: list[bytes] = []
        while self._queue and self._queue[0][0] <= now:
            due.append(heapq.heappop(self._queue)[2])
        self.delivered += len(due)
        return due

    def next_arrival(self) -> float | None:
        """When the next datagram arrives, or ``None`` when nothing is in flight."""
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        """Datagrams in flight."""
        return len(self._queue)

    def _lose(self) -> bool:
        """Whether the next datagram is lost (one step of the loss model)."""
        loss = self.impairment.loss
        if loss >= 1.0:
            return True
        if self._transitions is None:
            return loss > 0.0 and self._rng.random() < loss
        p_good_to_bad, p_bad_to_good = self._transitions
        flip = p_bad_to_good if self._bad else p_good_to_bad
        if self._rng.random() < flip:
            self._bad = not self._bad
        return self._bad
