"""Deterministic test helpers: a mock clock, seeded impaired networks, a lossy UDP relay.

* :class:`MockClock` -- time that moves only when a test says so.
* :class:`ImpairmentConfig` / :class:`Impairment` / :class:`GilbertElliott` --
  a seeded model of loss (independent or bursty), delay, jitter, reordering
  and duplication.
* :class:`FakeNet` -- two sans-I/O links joined by two impaired paths under a
  mock clock, pumped deterministically until idle or a deadline.
* :class:`ImpairingForwarder` -- the same impairment applied to real UDP
  datagrams on loopback, for end-to-end tests and benchmarks.

The hypothesis strategies of :mod:`hopline.testing.wire_strategies` are not
imported here (they need hypothesis, a test-only dependency).
"""

from hopline.testing.clock import MockClock
from hopline.testing.forwarder import ForwarderStats, ImpairingForwarder
from hopline.testing.lossy import (
    FakeNet,
    GilbertElliott,
    Impairment,
    ImpairmentConfig,
    ImpairmentStats,
    LossyPath,
)

__all__ = [
    "FakeNet",
    "ForwarderStats",
    "GilbertElliott",
    "ImpairingForwarder",
    "Impairment",
    "ImpairmentConfig",
    "ImpairmentStats",
    "LossyPath",
    "MockClock",
]
