"""One asyncio timer for one sans-I/O core.

Every core says when it next needs attention (``get_timer()``, an absolute
wall-clock time); its shell keeps exactly one loop timer armed for that
deadline and re-arms it after every input. :class:`CoreTimer` is that timer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class CoreTimer:
    """A single re-armable loop timer calling ``callback`` at a wall-clock deadline."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, deadline: float | None) -> None:
        """Fire at ``deadline`` (None: not at all), replacing any earlier arming."""
        self.cancel()
        if deadline is not None:
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
