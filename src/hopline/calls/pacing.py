"""The 20 ms media clock of a call or conference, sans-I/O.

A call's media loop wakes every frame to capture, send and play one 20 ms
frame. This module decides, given the loop's clock, how many frames are due
and how long to sleep until the next one; the asyncio loops in
:mod:`hopline.calls.service` and :mod:`hopline.calls.conference_service`
only apply its answers.

Two things make a naive "sleep until the next frame" loop go wrong:

* **Timers fire early.** uvloop (the daemon's event loop) keeps time in whole
  milliseconds and caches it per loop turn, so a sleep may end up to about a
  millisecond before its deadline. A loop that then sleeps the sub-millisecond
  remainder gets a zero-length timer and spins — measured at about 40 wake-ups
  per frame, which made a call on uvloop cost half again as much CPU as on
  asyncio's own loop. A frame within :data:`SLACK_S` of its time is therefore
  due now; its stream still gets its exact time (``start + n * frame``), so
  nothing downstream sees the early wake-up.
* **The loop can stall** (a slow disk, a busy machine). After a stall the
  clock runs at most :data:`MAX_CATCH_UP` frames back to back and skips
  older ones, so the call catches up instead of replaying a backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["FRAME_S", "MAX_CATCH_UP", "SLACK_S", "FrameClock"]

FRAME_S: Final = 0.02
"""One media frame: 20 ms."""

MAX_CATCH_UP: Final = 5
"""Frames processed at once after a late wake-up; older ones are skipped."""

SLACK_S: Final = 0.0015
"""A frame this close to its time is due now (timers fire up to ~1 ms early)."""


@dataclass
class FrameClock:
    """Which frames are due at a loop time, and how long to sleep after them.

    ``start`` is the loop time of frame 0. :meth:`due` returns the times of
    the frames to run now (oldest first) and counts them as done;
    :meth:`sleep_for` is the wait until the next frame.
    """

    start: float
    frame_s: float = FRAME_S
    slack_s: float = SLACK_S
    max_catch_up: int = MAX_CATCH_UP
    done: int = 0
    skipped: int = 0

    def due(self, now: float) -> list[float]:
        """The frame times to run at ``now``, at most :attr:`max_catch_up`."""
        due = int((now - self.start + self.slack_s) / self.frame_s) + 1
        oldest = due - self.max_catch_up
        if self.done < oldest:
            self.skipped += oldest - self.done
            self.done = oldest
        times = [self.start + n * self.frame_s for n in range(self.done, due)]
        self.done = max(self.done, due)
        return times

    def sleep_for(self, now: float) -> float:
        """Seconds until the next frame is due (never negative)."""
        return max(0.0, self.start + self.done * self.frame_s - now)
