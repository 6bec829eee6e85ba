"""Splitting messages into fragments, and putting them back together in bounded memory.

A message larger than one datagram is cut into ``count`` fragments of at most
``LinkConfig.max_fragment_payload`` bytes; fragment ``index`` travels in a
DATA frame with consecutive sequence numbers, so the message id of any
fragment is ``seq - index``.

Two reassemblers serve the two channels:

* :class:`InOrderAssembler` -- the reliable channel delivers fragments in
  order, exactly once, so one message at a time is assembled. It only has to
  bound that message's size and refuse fragments that break the
  ``0, 1, ..., count-1`` pattern.
* :class:`Reassembler` -- the unreliable channel delivers fragments in any
  order, some never. Partial messages are keyed by message id and bounded
  three ways: bytes per message (``max_message_size``), number of partial
  messages, and total buffered bytes. Every limit is checked *before* the
  fragment is stored (no buffer is ever sized from a count the peer claims);
  to make room the oldest partial message is evicted, so a flood of
  never-completed messages cannot pin memory or starve new traffic. Partial
  messages also expire ``timeout`` seconds after their first fragment.

Nothing here reads a clock: callers pass ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hopline.transport.errors import ConfigError, ReassemblyError

__all__ = [
    "InOrderAssembler",
    "ReassemblyLimits",
    "ReassemblyStats",
    "Reassembler",
    "split_message",
]


def split_message(data: bytes, max_fragment: int) -> list[bytes]:
    """Cut ``data`` into pieces of at most ``max_fragment`` bytes (one empty piece if empty)."""
    if max_fragment < 1:
        raise ConfigError(f"max_fragment must be positive, got {max_fragment}")
    if len(data) <= max_fragment:
        return [data]
    view = memoryview(data)
    return [bytes(view[i : i + max_fragment]) for i in range(0, len(data), max_fragment)]


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """Bounds of a :class:`Reassembler`."""

    max_message_size: int = 64 * 1024
    max_fragments: int = 64
    max_partial_messages: int = 64
    max_total_bytes: int = 1024 * 1024
    timeout: float = 2.0

    def __post_init__(self) -> None:
        """Refuse limits that could never hold one full message."""
        if self.max_total_bytes < self.max_message_size or self.max_partial_messages < 1:
            raise ConfigError("reassembly limits cannot hold one maximal message")
        if self.max_fragments < 1 or self.timeout <= 0:
            raise ConfigError("max_fragments and timeout must be positive")


@dataclass(slots=True)
class ReassemblyStats:
    """Counters of a :class:`Reassembler`."""

    completed: int = 0
    expired: int = 0
    evicted: int = 0


@dataclass(slots=True)
class _Partial:
    count: int
    deadline: float
    size: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)


class Reassembler:
    """Bounded, expiring reassembly of fragments arriving in any order."""

    def __init__(self, limits: ReassemblyLimits | None = None) -> None:
        """Create an empty reassembler."""
        self.limits = limits or ReassemblyLimits()
        self.stats = ReassemblyStats()
        self._partials: dict[int, _Partial] = {}
        self._bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Payload bytes currently held in partial messages."""
        return self._bytes

    @property
    def partial_count(self) -> int:
        """Messages with some but not all fragments."""
        return len(self._partials)

    def add(
        self, message_id: int, index: int, count: int, payload: bytes, now: float
    ) -> bytes | None:
        """Store one fragment; return the whole message when it completes.

        Raises :class:`ReassemblyError` (and stores nothing) for a fragment
        that is refused: too many fragments, message too large, a count that
        contradicts earlier fragments, or a duplicate.
        """
        self._check_shape(index, count)
        if count == 1:
            return self._single(payload)
        partial = self._partials.get(message_id)
        if partial is None:
            partial = self._open(message_id, count, now)
        self._check_fragment(message_id, partial, index, count, len(payload))
        self._make_room(len(payload), keep=message_id)
        partial.parts[index] = payload
        partial.size += len(payload)
        self._bytes += len(payload)
        if len(partial.parts) < partial.count:
            return None
        return self._complete(message_id, partial)

    def expire(self, now: float) -> int:
        """Drop partial messages whose deadline has passed; return how many."""
        expired = 0
        while self._partials:
            message_id, partial = next(iter(self._partials.items()))
            if partial.deadline > now:
                break
            self._discard(message_id)
            expired += 1
        self.stats.expired += expired
        return expired

    def next_deadline(self) -> float | None:
        """When the oldest partial message expires, or None."""
        for partial in self._partials.values():
            return partial.deadline
        return None

    def _check_shape(self, index: int, count: int) -> None:
        if count < 1 or not 0 <= index < count:
            raise ReassemblyError(f"fragment {index}/{count}", reason="bad_fragment")
        if count > self.limits.max_fragments:
            raise ReassemblyError(f"{count} fragments", reason="too_many_fragments")

    def _single(self, payload: bytes) -> bytes:
        if len(payload) > self.limits.max_message_size:
            raise ReassemblyError("message too large", reason="message_too_large")
        self.stats.completed += 1
        return payload

    def _open(self, message_id: int, count: int, now: float) -> _Partial:
        while len(self._partials) >= self.limits.max_partial_messages:
            self._evict_oldest()
        partial = _Partial(count=count, deadline=now + self.limits.timeout)
        self._partials[message_id] = partial
        return partial

    def _check_fragment(
        self, message_id: int, partial: _Partial, index: int, count: int, size: int
    ) -> None:
        if count != partial.count:
            raise ReassemblyError("fragment count changed", reason="fragment_mismatch")
        if index in partial.parts:
            raise ReassemblyError("fragment already held", reason="duplicate_fragment")
        if partial.size + size > self.limits.max_message_size:
            self._discard(message_id)
            raise ReassemblyError("message too large", reason="message_too_large")

    def _make_room(self, size: int, *, keep: int) -> None:
        while self._bytes + size > self.limits.max_total_bytes:
            victim = next((mid for mid in self._partials if mid != keep), None)
            if victim is None:
                break
            self._discard(victim)
            self.stats.evicted += 1

    def _evict_oldest(self) -> None:
        self._discard(next(iter(self._partials)))
        self.stats.evicted += 1

    def _discard(self, message_id: int) -> None:
        partial = self._partials.pop(message_id)
        self._bytes -= partial.size

    def _complete(self, message_id: int, partial: _Partial) -> bytes:
        self._discard(message_id)
        self.stats.completed += 1
        return b"".join(partial.parts[i] for i in range(partial.count))


class InOrderAssembler:
    """Joins in-order fragments ``0..count-1`` into messages, one message at a time.

    After a refused fragment the rest of that message is discarded (each
    discarded fragment raises ``ReassemblyError("broken_message")``) until a
    fragment with ``index == 0`` starts the next message. A message cut short
    by a new ``index == 0`` is counted in :attr:`abandoned`.
    """

    def __init__(self, max_message_size: int) -> None:
        """Create an assembler that refuses messages above ``max_message_size`` bytes."""
        self.max_message_size = max_message_size
        self._parts: list[bytes] = []
        self._count = 0
        self._size = 0
        self._broken = False
        self.abandoned = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes of the message being assembled."""
        return self._size

    def push(self, index: int, count: int, payload: bytes) -> bytes | None:
        """Add the next fragment; return the message once its last fragment arrives."""
        if index == 0:
            self.abandoned += bool(self._parts)
            self._reset()
        elif self._broken:
            raise ReassemblyError("rest of a refused message", reason="broken_message")
        elif index != len(self._parts) or count != self._count:
            self._break()
            raise ReassemblyError(f"fragment {index}/{count} out of order", reason="bad_fragment")
        if self._size + len(payload) > self.max_message_size:
            self._break()
            raise ReassemblyError("message too large", reason="message_too_large")
        self._count = count
        self._parts.append(payload)
        self._size += len(payload)
        if index < count - 1:
            return None
        message = self._parts[0] if count == 1 else b"".join(self._parts)
        self._reset()
        return message

    def _reset(self) -> None:
        self._parts = []
        self._count = 0
        self._size = 0
        self._broken = False

    def _break(self) -> None:
        self._reset()
        self._broken = True
