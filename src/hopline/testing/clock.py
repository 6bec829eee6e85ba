"""A manual clock for driving sans-I/O state machines in tests.

Sans-I/O cores take ``now`` as an argument; a test holds one
:class:`MockClock`, passes ``clock.now()`` everywhere and moves time only
with :meth:`MockClock.advance` / :meth:`MockClock.advance_to`. Nothing ever
waits for real time, so a simulated minute of retransmission timeouts costs
microseconds.
"""

from __future__ import annotations

__all__ = ["MockClock"]


class MockClock:
    """Time that moves only when told to (seconds, float)."""

    def __init__(self, start: float = 0.0) -> None:
        """Start the clock at ``start`` seconds."""
        self._now = start

    def now(self) -> float:
        """The current simulated time."""
        return self._now

    def __call__(self) -> float:
        """Same as :meth:`now`, so the clock can be passed where a time function is expected."""
        return self._now

    def advance(self, dt: float) -> float:
        """Move forward by ``dt`` seconds (must be >= 0); return the new time."""
        if dt < 0:
            raise ValueError(f"time cannot go backwards (dt={dt})")
        self._now += dt
        return self._now

    def advance_to(self, when: float) -> float:
        """Move forward to ``when`` if it is later than now; return the new time."""
        self._now = max(self._now, when)
        return self._now
