"""Sliding anti-replay window for explicitly numbered datagrams.

Semantics are those of RFC 4303 (IPsec ESP) appendix A / RFC 6479: the
receiver remembers the highest authenticated counter ``T`` and a bitmap of
which of the ``size`` counters ``T, T-1, ..., T-size+1`` were seen.

* ``c > T``                -- new; accepted (the window slides forward).
* ``T - size < c <= T``    -- accepted once; a second time is ``replayed``.
* ``c <= T - size``        -- ``too_old`` (we can no longer tell).

The bitmap is one Python ``int`` (bit *i* = counter ``T - i``); sliding is a
shift and a mask. RFC 6479's ring of 64-bit blocks exists to avoid
bit-shifting large C arrays; an arbitrary-precision int gives the same
behaviour with less code and is fast for windows of a few thousand bits.

Checking and updating are separate so that a packet is checked *before* the
(expensive) AEAD verification and recorded only *after* it authenticates:
a forged packet never moves the window (RFC 4303 section 3.4.3).
"""

from __future__ import annotations

from typing import Final

from hopline.crypto.errors import ReplayError

__all__ = ["DEFAULT_WINDOW_SIZE", "ReplayWindow"]

DEFAULT_WINDOW_SIZE: Final = 1024


class ReplayWindow:
    """Sliding replay window over non-negative packet counters."""

    __slots__ = ("_bitmap", "_highest", "_mask", "size")

    def __init__(self, size: int = DEFAULT_WINDOW_SIZE) -> None:
        if size < 1:
            raise ValueError("replay window size must be positive")
        self.size = size
        self._mask = (1 << size) - 1
        self._highest = -1
        self._bitmap = 0

    @property
    def highest(self) -> int:
        """Highest counter accepted so far, or -1 if none."""
        return self._highest

    def seen(self, counter: int) -> bool:
        """True if ``counter`` was already accepted (only meaningful inside the window)."""
        offset = self._highest - counter
        return 0 <= offset < self.size and bool((self._bitmap >> offset) & 1)

    def check(self, counter: int) -> None:
        """Raise :class:`ReplayError` if ``counter`` must be rejected; never mutates."""
        if counter < 0:
            raise ReplayError("negative packet counter", reason="bad_counter")
        if counter > self._highest:
            return
        offset = self._highest - counter
        if offset >= self.size:
            raise ReplayError("packet older than the replay window", reason="too_old")
        if (self._bitmap >> offset) & 1:
            raise ReplayError("packet already received", reason="replayed")

    def update(self, counter: int) -> None:
        """Record an *authenticated* ``counter`` (checks it first)."""
        self.check(counter)
        if counter > self._highest:
            shift = counter - self._highest
            # A big jump clears the window; never build a huge int from a far-future counter.
            kept = (self._bitmap << shift) & self._mask if shift < self.size else 0
            self._bitmap = kept | 1
            self._highest = counter
        else:
            self._bitmap |= 1 << (self._highest - counter)

    def __repr__(self) -> str:
        return f"ReplayWindow(size={self.size}, highest={self._highest})"
