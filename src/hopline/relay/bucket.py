"""Token buckets with time passed in: the relay's rate limits.

A :class:`TokenBucket` holds up to ``burst`` tokens and gains ``rate``
tokens per second. Spending is all or nothing: :meth:`TokenBucket.take`
either takes the whole amount or nothing. :func:`take_all` spends from
several buckets at once only if every one of them can pay, so a packet
refused by its packet-rate bucket does not also drain its byte-rate bucket.
Time is whatever ``now`` the caller passes (seconds); going backwards is
treated as no time passing.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["TokenBucket", "take_all"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` banked; starts full."""

    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        """A full bucket at time ``now``."""
        if rate < 0 or burst <= 0:
            raise ValueError(f"bad bucket: rate {rate}, burst {burst}")
        self.rate, self.burst = float(rate), float(burst)
        self.tokens, self.updated = float(burst), now

    def refill(self, now: float) -> float:
        """Add what accrued since the last call; return the tokens available."""
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
        return self.tokens

    def can_take(self, amount: float, now: float) -> bool:
        """Whether ``amount`` tokens are available at ``now``."""
        return self.refill(now) >= amount

    def take(self, amount: float, now: float) -> bool:
        """Take ``amount`` tokens if available; False (and nothing taken) if not."""
        if not self.can_take(amount, now):
            return False
        self.tokens -= amount
        return True


def take_all(charges: Sequence[tuple[TokenBucket, float]], now: float) -> int | None:
    """Take each ``(bucket, amount)`` if all can pay; else the index of the first that cannot."""
    for index, (bucket, amount) in enumerate(charges):
        if not bucket.can_take(amount, now):
            return index
    for bucket, amount in charges:
        bucket.tokens -= amount
    return None
