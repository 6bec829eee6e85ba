"""The transport layer's error family.

As in h11 (and :mod:`hopline.wire` / :mod:`hopline.crypto`), errors are split
by whose fault they are:

* :class:`LocalTransportError` -- *our* caller misused the API: a message
  larger than the configured maximum, sending on a closed link, a full send
  queue, an invalid configuration, a frame that cannot be encoded. These are
  raised out of :class:`~hopline.transport.link.Link` methods to the caller.
* :class:`RemoteTransportError` -- the *peer* (or the path) sent bytes we
  refuse: a malformed datagram, an ACK for data never sent, a fragment that
  contradicts the rest of its message. These never escape
  :meth:`Link.receive_datagram <hopline.transport.link.Link.receive_datagram>`;
  they are raised inside the sans-I/O core, caught at its edge and counted in
  :attr:`LinkStats.dropped <hopline.transport.link.LinkStats.dropped>` under
  :attr:`TransportError.reason`.

Every error carries a short, stable, machine-friendly ``reason`` string
(``"truncated"``, ``"bad_magic"``, ``"beyond_window"``...) usable as a metrics
label; ``str(err)`` is for humans.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FrameEncodeError",
    "LinkClosedError",
    "LocalTransportError",
    "MalformedPacket",
    "MessageTooLarge",
    "ProtocolViolation",
    "ReassemblyError",
    "RemoteTransportError",
    "SendQueueFull",
    "TransportError",
]


class TransportError(Exception):
    """Base class of every error raised by :mod:`hopline.transport`."""

    default_reason = "transport_error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        """Create the error; ``reason`` overrides the class's ``default_reason``."""
        self.reason: str = reason if reason is not None else self.default_reason
        super().__init__(message or self.reason)


class LocalTransportError(TransportError):
    """The local application misused the API or is misconfigured."""

    default_reason = "local_error"


class ConfigError(LocalTransportError):
    """A :class:`~hopline.transport.config.LinkConfig` value is out of range."""

    default_reason = "bad_config"


class MessageTooLarge(LocalTransportError):
    """A message to send exceeds ``LinkConfig.max_message_size``."""

    default_reason = "message_too_large"


class SendQueueFull(LocalTransportError):
    """Queued, not yet sent bytes would exceed ``LinkConfig.max_send_queue_bytes``."""

    default_reason = "send_queue_full"


class LinkClosedError(LocalTransportError):
    """The link is closed (locally, by the peer, or after the peer became unreachable)."""

    default_reason = "link_closed"


class FrameEncodeError(LocalTransportError):
    """A frame field does not fit its wire width (a bug in the caller)."""

    default_reason = "encode"


class RemoteTransportError(TransportError):
    """Bytes received from the network were refused; drop them and count."""

    default_reason = "remote_error"


class MalformedPacket(RemoteTransportError):
    """A datagram does not parse: bad magic, truncated frame, unknown frame type..."""

    default_reason = "malformed"


class ProtocolViolation(RemoteTransportError):
    """A well-formed frame contradicts the link state (ACK of unsent data, out-of-window...)."""

    default_reason = "protocol_violation"


class ReassemblyError(RemoteTransportError):
    """A fragment cannot join its message (size limit, duplicate, inconsistent count...)."""

    default_reason = "reassembly"
