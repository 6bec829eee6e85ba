"""The unreliable channel: sequenced, never retransmitted, for media.

Voice frames are useless once late, so this channel sends each message once.
Every fragment still carries a sequence number (its own counter, separate
from the reliable channel's) so that the receiver can:

* count loss -- ``expected = highest + 1`` sequence numbers (the channel
  starts at 0) versus the distinct ones that arrived;
* drop duplicates and replays -- a sliding bitmap of the last
  ``replay_window`` sequence numbers, as in SRTP/IPsec; older ones are
  refused as ``too_old``;
* reassemble a message larger than one datagram -- fragments go through a
  bounded, expiring :class:`~hopline.transport.fragment.Reassembler`, keyed by
  ``seq - index``. One lost fragment loses the whole message: its partial
  buffer expires after ``reassembly_timeout`` (or is evicted earlier).
"""

from __future__ import annotations

from collections import deque

from hopline.transport.config import LinkConfig
from hopline.transport.errors import MessageTooLarge, ProtocolViolation, SendQueueFull
from hopline.transport.fragment import Reassembler, ReassemblyLimits, split_message
from hopline.transport.packet import DATA_FRAME_OVERHEAD, DataFrame, expand_seq

__all__ = ["UnreliableReceiver", "UnreliableSender"]


class UnreliableSender:
    """Cuts messages into sequenced fragments that are sent once."""

    def __init__(self, config: LinkConfig) -> None:
        """Create a sender whose first fragment has sequence number 0."""
        self._config = config
        self.fragment_payload = config.max_fragment_payload  # lowered by Link.set_send_mtu
        self._next_seq = 0
        self._queue: deque[DataFrame] = deque()
        self._queued_bytes = 0
        self.messages_sent = 0
        self.fragments_sent = 0

    @property
    def pending(self) -> bool:
        """Fragments wait to be sent."""
        return bool(self._queue)

    def enqueue(self, data: bytes) -> None:
        """Queue one message for a single transmission."""
        if len(data) > self._config.max_message_size:
            raise MessageTooLarge(f"{len(data)} > {self._config.max_message_size} bytes")
        if self._queued_bytes + len(data) > self._config.max_send_queue_bytes:
            raise SendQueueFull(f"{self._queued_bytes} bytes already queued")
        pieces = split_message(data, self.fragment_payload)
        for index, piece in enumerate(pieces):
            self._queue.append(DataFrame(False, self._next_seq, index, len(pieces), piece))
            self._next_seq += 1
        self._queued_bytes += len(data)
        self.messages_sent += 1

    def pop_frame(self, space: int) -> DataFrame | None:
        """Return the next fragment if it fits in ``space`` bytes."""
        if not self._queue or DATA_FRAME_OVERHEAD + len(self._queue[0].payload) > space:
            return None
        frame = self._queue.popleft()
        self._queued_bytes -= len(frame.payload)
        self.fragments_sent += 1
        return frame


class UnreliableReceiver:
    """Deduplicates, counts loss, and reassembles unreliable fragments."""

    def __init__(self, config: LinkConfig) -> None:
        """Create a receiver with the link's reassembly bounds."""
        self._window = config.replay_window
        self.reassembler = Reassembler(
            ReassemblyLimits(
                max_message_size=config.max_message_size,
                max_fragments=config.max_fragments,
                max_partial_messages=config.max_partial_messages,
                max_total_bytes=config.max_reassembly_bytes,
                timeout=config.reassembly_timeout,
            )
        )
        self._highest = -1
        self._seen = 0
        self.received = 0
        self.duplicates = 0

    @property
    def expected(self) -> int:
        """Distinct sequence numbers the peer has used, as far as we can tell."""
        return self._highest + 1

    @property
    def lost(self) -> int:
        """Sequence numbers never received (reordered late arrivals still count once)."""
        return max(0, self.expected - self.received)

    def on_data(self, frame: DataFrame, now: float) -> bytes | None:
        """Accept one fragment; return a complete message, or None.

        Raises ProtocolViolation (``too_old``) or ReassemblyError for refused
        fragments; duplicates are counted in :attr:`duplicates` and ignored.
        """
        seq = expand_seq(frame.seq, max(self._highest, 0))
        if not self._mark_seen(seq):
            self.duplicates += 1
            return None
        self.received += 1
        message_id = seq - frame.index
        return self.reassembler.add(message_id, frame.index, frame.count, frame.payload, now)

    def _mark_seen(self, seq: int) -> bool:
        if seq > self._highest:
            shift = seq - self._highest
            self._seen = ((self._seen << shift) | 1) if shift < self._window else 1
            self._seen &= (1 << self._window) - 1
            self._highest = seq
            return True
        offset = self._highest - seq
        if offset >= self._window or seq < 0:
            raise ProtocolViolation(f"seq {seq} older than the replay window", reason="too_old")
        if self._seen >> offset & 1:
            return False
        self._seen |= 1 << offset
        return True
