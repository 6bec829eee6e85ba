"""Channel-data frames: relayed datagrams with a two-byte header.

On the owner's secure connection, relayed datagrams travel on the
*unreliable* channel. The general form is a wire notice (``relay.send``
from the owner, ``relay.data`` to it) that names the allocation and the
peer's address. Once the owner has bound a channel number to a peer
(``relay.channel``), the same datagram travels as a *channel-data frame*,
as TURN's ChannelData does::

    +-------------------------+----------------------------+
    | channel: 2 bytes, BE    | payload: rest of datagram  |
    +-------------------------+----------------------------+

The channel number lies in ``0x4000-0x7FFF``, so the first byte is in
``0x40-0x7F`` and can never be mistaken for a wire message, whose header
byte is ``0x10-0x13`` (version 1). The unreliable channel delimits
datagrams, so no length field is needed. :func:`parse_channel_frame`
raises only :class:`FrameError`.

Between the owner and its supernode, a large datagram on a bound channel
travels as a *channel datagram* of the owner's connection
(:meth:`hopline.connection.Connection.send_channel`): authenticated but not
encrypted again, outside the link, and handed to the other end as the same
channel number and payload. A peer connection that runs through a relay builds its datagrams no
larger than :data:`RELAYED_DATAGRAM_SIZE`, so that each one is a single
channel datagram of at most 1,200 bytes.
"""

from __future__ import annotations

from hopline.connection.core import DATAGRAM_SIZE
from hopline.connection.events import channel_data_frame
from hopline.crypto.session import CHANNEL_OVERHEAD
from hopline.relay.allocation import CHANNEL_MAX, CHANNEL_MIN

__all__ = [
    "RELAYED_DATAGRAM_SIZE",
    "FrameError",
    "channel_frame",
    "is_channel_frame",
    "parse_channel_frame",
]

HEADER_SIZE = 2
RELAYED_DATAGRAM_SIZE = DATAGRAM_SIZE - CHANNEL_OVERHEAD
"""Largest datagram a relayed peer connection builds: one channel datagram of 1,200 bytes."""


class FrameError(ValueError):
    """A datagram that is not a channel-data frame; ``reason`` is the counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_channel_frame(data: bytes) -> bool:
    """Whether ``data`` starts like a channel-data frame (first byte 0x40-0x7F)."""
    return bool(data) and 0x40 <= data[0] <= 0x7F


def channel_frame(channel: int, payload: bytes) -> bytes:
    """The frame carrying ``payload`` on ``channel``."""
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise ValueError(f"channel {channel:#x} outside 0x4000-0x7FFF")
    return channel_data_frame(channel, payload)


def parse_channel_frame(data: bytes) -> tuple[int, bytes]:
    """``(channel, payload)`` of a frame; :class:`FrameError` if it is none."""
    if len(data) < HEADER_SIZE:
        raise FrameError("channel:truncated")
    channel = int.from_bytes(data[:HEADER_SIZE], "big")
    if not CHANNEL_MIN <= channel <= CHANNEL_MAX:
        raise FrameError("channel:out-of-range")
    return channel, bytes(data[HEADER_SIZE:])
