"""Hopline's link transport: framing, fragmentation and reliability, sans-I/O.

Design
------
Everything in this package is a pure state machine in the style of h11 and
aioquic: bytes and the current time go in, bytes, events and the next
deadline come out. No module here opens a socket, reads a clock, sleeps or
uses global randomness, so the whole protocol runs deterministically under a
mock clock and a seeded lossy network (:mod:`hopline.testing`), and the same
:class:`Link` runs unchanged over UDP or over a length-prefixed TCP stream
(:mod:`hopline.runtime`).

Layers, bottom up:

* :mod:`~hopline.transport.packet` -- the datagram format: a magic/version
  byte, then DATA, ACK, PING, PONG and CLOSE frames (documented byte by byte
  there and in ``docs/transport.md``).
* :mod:`~hopline.transport.fragment` -- splitting messages into fragments;
  bounded, expiring reassembly.
* :mod:`~hopline.transport.reliable` -- the reliable in-order channel:
  SACK/NACK acknowledgements, fast retransmit, RFC 6298 RTO with Karn's rule
  and backoff, a fixed send window with a send queue behind it.
* :mod:`~hopline.transport.unreliable` -- the media channel: sequenced,
  deduplicated, loss-counted, never retransmitted.
* :mod:`~hopline.transport.link` -- :class:`Link` multiplexes both channels,
  delayed/piggybacked ACKs and keep-alive PINGs, and reports
  :class:`LinkStats`.

Errors follow h11's split (:mod:`~hopline.transport.errors`): local misuse
raises :class:`LocalTransportError`; bad peer input is a
:class:`RemoteTransportError` that never escapes :meth:`Link.receive_datagram`
-- it is counted by reason in :attr:`LinkStats.dropped`.
"""

from hopline.transport.config import LinkConfig
from hopline.transport.errors import (
    ConfigError,
    FrameEncodeError,
    LinkClosedError,
    LocalTransportError,
    MalformedPacket,
    MessageTooLarge,
    ProtocolViolation,
    ReassemblyError,
    RemoteTransportError,
    SendQueueFull,
    TransportError,
)
from hopline.transport.fragment import (
    InOrderAssembler,
    Reassembler,
    ReassemblyLimits,
    split_message,
)
from hopline.transport.link import (
    Link,
    LinkEvent,
    LinkStats,
    MessageReceived,
    PeerClosed,
    PeerUnreachable,
)
from hopline.transport.packet import (
    AckFrame,
    AckRange,
    CloseFrame,
    DataFrame,
    Frame,
    PingFrame,
    PongFrame,
    decode_datagram,
    encode_datagram,
)
from hopline.transport.reliable import RttEstimator

__all__ = [
    "AckFrame",
    "AckRange",
    "CloseFrame",
    "ConfigError",
    "DataFrame",
    "Frame",
    "FrameEncodeError",
    "InOrderAssembler",
    "Link",
    "LinkClosedError",
    "LinkConfig",
    "LinkEvent",
    "LinkStats",
    "LocalTransportError",
    "MalformedPacket",
    "MessageReceived",
    "MessageTooLarge",
    "PeerClosed",
    "PeerUnreachable",
    "PingFrame",
    "PongFrame",
    "ProtocolViolation",
    "ReassemblyError",
    "ReassemblyLimits",
    "Reassembler",
    "RemoteTransportError",
    "RttEstimator",
    "SendQueueFull",
    "TransportError",
    "decode_datagram",
    "encode_datagram",
    "split_message",
]
