"""Events a :class:`~hopline.connection.core.Connection` reports (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from hopline.identity import Certificate
from hopline.wire import Message


@dataclass(frozen=True, slots=True)
class PeerIdentity:
    """Who the other end proved to be: its static key and, if any, its certificate."""

    static_key: bytes
    certificate: Certificate | None

    @property
    def name(self) -> str | None:
        """The certified username or supernode id, or None for an anonymous peer."""
        return self.certificate.subject if self.certificate is not None else None


class ConnectionEvent:
    """Base class of connection events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Established(ConnectionEvent):
    """The handshake completed and the peer's certificate (if any) verified."""

    peer: PeerIdentity


@dataclass(frozen=True, slots=True)
class MessageReceived(ConnectionEvent):
    """A request or notice arrived on the reliable channel."""

    message: Message


@dataclass(frozen=True, slots=True)
class ReplyReceived(ConnectionEvent):
    """The reply (or error reply) to one of our requests."""

    request_id: int
    message: Message


@dataclass(frozen=True, slots=True)
class RequestFailed(ConnectionEvent):
    """A request of ours got no reply: ``reason`` is ``timeout`` or ``closed``."""

    request_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class MediaReceived(ConnectionEvent):
    """A datagram arrived on the unreliable channel."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ChannelDataReceived(ConnectionEvent):
    """A channel datagram arrived: a relayed ``payload`` on relay ``channel``."""

    channel: int
    payload: bytes


def channel_data_frame(channel: int, payload: bytes) -> bytes:
    """The channel-data frame for ``payload`` on ``channel``: 2 big-endian bytes, then the payload.

    This is how channel data travels inside the link when it cannot go as a
    channel datagram (before the handshake ends, or too large for one), and
    how a receiver with no channel handler passes a channel datagram on.
    """
    return channel.to_bytes(2, "big") + payload


@dataclass(frozen=True, slots=True)
class Closed(ConnectionEvent):
    """The connection is over; ``reason`` says why (e.g. ``certificate:expired``)."""

    reason: str
