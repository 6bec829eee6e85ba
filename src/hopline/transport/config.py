"""Tunables of a :class:`~hopline.transport.link.Link`, validated once.

Both ends of a link must agree on ``mtu``, ``min_send_mtu``, ``window`` and
``max_message_size`` (there is no negotiation: the values are protocol
constants of a deployment). Everything else is local policy. A link accepts
datagrams up to ``mtu`` and builds them up to ``mtu`` too, unless its owner
lowers what it builds (:meth:`~hopline.transport.link.Link.set_send_mtu`,
never below ``min_send_mtu``): a connection carried inside another one, such
as a path through a relay, builds datagrams that still fit the carrier's.
Reassembly allows as many fragments as a message cut at ``min_send_mtu``
needs, so either end may build smaller datagrams without telling the other.

Defaults follow the RFCs where they are safe for interactive traffic:
RFC 6298 for RTO (initial 1 s, max 60 s, K = 4, alpha = 1/8, beta = 1/4) except
the minimum RTO, which is 200 ms like Linux rather than the RFC's
conservative 1 s; QUIC (RFC 9002) for loss detection thresholds and ACK delay
handling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hopline.transport.errors import ConfigError
from hopline.transport.packet import (
    ACK_FRAME_BASE,
    ACK_RANGE_SIZE,
    DATA_FRAME_OVERHEAD,
    HEADER_SIZE,
    MAX_ACK_RANGES,
)

__all__ = ["ACK_RESERVE_RANGES", "LinkConfig", "fragment_payload"]

ACK_RESERVE_RANGES = 4
"""Room for an ACK with this many ranges is left beside a full-size fragment."""

_MAX_UDP_PAYLOAD = 65507
_MIN_MTU = 128
_MAX_WINDOW = 32768
_MAX_FRAGMENTS = 0xFFFF


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Every tunable of a link; defaults suit a voice/messaging overlay on the Internet."""

    mtu: int = 1200
    """Largest datagram sent or accepted, header included."""
    min_send_mtu: int | None = None
    """Smallest datagram size either end may build (``Link.set_send_mtu``); None: ``mtu``."""
    max_message_size: int = 64 * 1024
    """Largest message ``Link.send`` accepts (and reassembly allows)."""
    window: int = 256
    """Reliable segments in flight (sender) / buffered out of order (receiver)."""
    max_send_queue_bytes: int = 16 * 1024 * 1024
    """Bytes waiting behind a full window before ``send`` raises SendQueueFull."""
    initial_rto: float = 1.0
    min_rto: float = 0.2
    max_rto: float = 60.0
    clock_granularity: float = 0.001
    max_retransmissions: int = 8
    """Consecutive RTO expirations without progress before PeerUnreachable."""
    packet_threshold: int = 3
    """A segment is lost once one sent this many datagrams later is acked."""
    tail_loss_probe: bool = True
    """Resend the last segment after ~2 SRTT without ACK (RFC 8985 TLP), before the RTO."""
    max_ack_delay: float = 0.025
    """Longest an ACK is held waiting for data to ride on (QUIC's default ``max_ack_delay``).

    The sender assumes the peer holds ACKs this long too: it is added to the
    RTO and the tail-loss probe timeout, so a delayed ACK never looks like loss.
    """
    ack_every: int = 2
    """Ack at once after this many datagrams carrying reliable data."""
    max_ack_ranges: int = 32
    keepalive_interval: float = 25.0
    """Send a PING after this long without sending, or without receiving, anything.

    Above the 20 s at which client sessions ping their home (so an idle session
    costs no link PINGs), below the 30 s UDP binding timeout of strict NATs.
    """
    idle_timeout: float = 30.0
    """PeerUnreachable after this long without receiving anything.

    An unanswered keep-alive PING is repeated, backing off from the RTO, so a
    lost PING or PONG does not cost the link.
    """
    max_outstanding_pings: int = 4
    reassembly_timeout: float = 2.0
    max_partial_messages: int = 64
    max_reassembly_bytes: int = 1024 * 1024
    replay_window: int = 1024
    """Unreliable seqs remembered for duplicate detection."""

    def __post_init__(self) -> None:
        """Refuse inconsistent values with ConfigError."""
        self._check_sizes()
        self._check_times()
        self._check_counts()

    def _check_sizes(self) -> None:
        _require(_MIN_MTU <= self.mtu <= _MAX_UDP_PAYLOAD, f"mtu {self.mtu}")
        _require(
            _MIN_MTU <= self.smallest_send_mtu <= self.mtu, f"min_send_mtu {self.min_send_mtu}"
        )
        _require(self.max_message_size >= 0, "max_message_size")
        _require(self.max_fragments <= _MAX_FRAGMENTS, "max_message_size needs >65535 fragments")
        _require(self.max_reassembly_bytes >= self.max_message_size, "max_reassembly_bytes")
        _require(self.max_send_queue_bytes >= self.max_message_size, "max_send_queue_bytes")

    def _check_times(self) -> None:
        _require(0 < self.min_rto <= self.initial_rto <= self.max_rto, "need min<=initial<=max RTO")
        _require(self.clock_granularity > 0, "clock_granularity")
        _require(0 <= self.max_ack_delay < self.min_rto, "max_ack_delay must be < min_rto")
        _require(self.keepalive_interval > 0, "keepalive_interval")
        _require(self.idle_timeout > self.keepalive_interval, "idle_timeout <= keepalive")
        _require(self.reassembly_timeout > 0, "reassembly_timeout")

    def _check_counts(self) -> None:
        _require(1 <= self.window <= _MAX_WINDOW, f"window {self.window}")
        _require(self.max_retransmissions >= 1, "max_retransmissions")
        _require(self.packet_threshold >= 1, "packet_threshold")
        _require(self.ack_every >= 1, "ack_every")
        _require(1 <= self.max_ack_ranges <= MAX_ACK_RANGES, "max_ack_ranges")
        _require(self.max_outstanding_pings >= 1, "max_outstanding_pings")
        _require(self.max_partial_messages >= 1, "max_partial_messages")
        _require(self.replay_window >= 1, "replay_window")

    @property
    def max_fragment_payload(self) -> int:
        """Payload bytes per fragment: a full fragment still leaves room for a small ACK."""
        return fragment_payload(self.mtu)

    @property
    def smallest_send_mtu(self) -> int:
        """``min_send_mtu``, or ``mtu`` when it is not set."""
        return self.mtu if self.min_send_mtu is None else self.min_send_mtu

    @property
    def max_fragments(self) -> int:
        """Fragments of the largest allowed message, cut at the smallest send size."""
        smallest = fragment_payload(self.smallest_send_mtu)
        return max(1, math.ceil(self.max_message_size / smallest))


def fragment_payload(mtu: int) -> int:
    """Payload bytes per fragment in datagrams of ``mtu`` bytes, leaving room for a small ACK."""
    return (
        mtu
        - HEADER_SIZE
        - DATA_FRAME_OVERHEAD
        - ACK_FRAME_BASE
        - ACK_RESERVE_RANGES * ACK_RANGE_SIZE
    )


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise ConfigError(f"invalid LinkConfig: {what}")
