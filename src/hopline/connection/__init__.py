"""Secure connections: handshake + sealed datagrams + link + messages, sans-I/O.

:class:`Connection` is the per-peer state machine every Hopline link runs
(client to login server, client to supernode, supernode to supernode, peer
to peer); :mod:`hopline.runtime.endpoint` runs connections over real sockets.
"""

from hopline.connection.core import (
    Connection,
    ConnectionClosedError,
    ConnectionConfig,
    Expectation,
    State,
    default_link_config,
)
from hopline.connection.events import (
    ChannelDataReceived,
    Closed,
    ConnectionEvent,
    Established,
    MediaReceived,
    MessageReceived,
    PeerIdentity,
    ReplyReceived,
    RequestFailed,
    channel_data_frame,
)
from hopline.connection.handshake import FramingError, HandshakePayload, looks_like_init

__all__ = [
    "ChannelDataReceived",
    "Closed",
    "Connection",
    "ConnectionClosedError",
    "ConnectionConfig",
    "ConnectionEvent",
    "Established",
    "Expectation",
    "FramingError",
    "HandshakePayload",
    "MediaReceived",
    "MessageReceived",
    "PeerIdentity",
    "ReplyReceived",
    "RequestFailed",
    "State",
    "channel_data_frame",
    "default_link_config",
    "looks_like_init",
]
