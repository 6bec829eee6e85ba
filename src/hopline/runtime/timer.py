"""One asyncio timer for one sans-I/O core.

Every core says when it next needs attention (``get_timer()``, an absolute
wall-clock time); its shell keeps exactly one loop timer armed for that
deadline and re-arms it after every input. :class:`CoreTimer` is that timer.

A busy connection re-arms after every datagram, and its deadline mostly
moves *later* (a retransmission or keep-alive timer pushed back by the
latest ACK). Cancelling and re-creating a loop timer each time costs more
than the rest of the shell's per-datagram work, and the cancelled handles
pile up in the loop's heap. A *lazy* timer (``lazy=True``) therefore keeps
an armed handle whose deadline is not later than the new one: it fires
early, the core finds nothing due (every core checks ``now`` against its
own deadlines), and the callback re-arms it for the real deadline. Only
an earlier deadline replaces the handle. A lazy timer's callback must
re-arm it after handling the core's timer, as every shell does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["CoreTimer"]


class CoreTimer:
    """A single re-armable loop timer calling ``callback`` at a wall-clock deadline."""

    def __init__(self, callback: Callable[[], None], *, lazy: bool = False) -> None:
        """``lazy``: keep an earlier arming instead of moving it later (see the module)."""
        self._callback = callback
        self._lazy = lazy
        self._handle: asyncio.TimerHandle | None = None
        self._deadline = float("inf")

    @property
    def deadline(self) -> float | None:
        """When the timer fires next (wall clock), or None if it is not armed."""
        return self._deadline if self._handle is not None else None

    def arm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` (None: not at all), replacing any earlier arming.

        A lazy timer keeps an arming at or before ``deadline`` (it fires early).
        """
        if deadline is None:
            self.cancel()
            return
        if self._lazy and self._handle is not None and self._deadline <= deadline:
            return
        self.cancel()
        self._deadline = deadline
        delay = max(0.0, deadline - time.time())
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def cancel(self) -> None:
        """Disarm."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self._callback()
