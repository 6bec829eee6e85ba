"""Relay allocations on supernodes (TURN-like), sans-I/O.

:mod:`~hopline.relay.allocation` holds :class:`RelayTable`, which decides
allocations, permissions, channels, quotas and expiry with time passed in;
:mod:`~hopline.relay.bucket` its token buckets; :mod:`~hopline.relay.framing`
the channel-data frames relayed datagrams use on the owner's unreliable
channel. The supernode's asyncio shell is
:mod:`hopline.supernode.relay_service`; docs/protocol.md ("Relay") has the
wire side.
"""

from hopline.relay.allocation import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    ChannelBound,
    Deliver,
    Drop,
    Owner,
    Permitted,
    Refusal,
    RelayAllocation,
    RelayConfig,
    RelayTable,
    Released,
    Transmit,
)
from hopline.relay.bucket import TokenBucket, take_all
from hopline.relay.framing import FrameError, channel_frame, is_channel_frame, parse_channel_frame

__all__ = [
    "CHANNEL_MAX",
    "CHANNEL_MIN",
    "ChannelBound",
    "Deliver",
    "Drop",
    "FrameError",
    "Owner",
    "Permitted",
    "Refusal",
    "RelayAllocation",
    "RelayConfig",
    "RelayTable",
    "Released",
    "TokenBucket",
    "Transmit",
    "channel_frame",
    "is_channel_frame",
    "parse_channel_frame",
    "take_all",
]
