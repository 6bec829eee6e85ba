"""Handshake datagrams: the only bytes of a Hopline flow with a fixed header.

A handshake datagram is::

    +------+--------------+-------------------+---------------+-----------------+
    | type | handshake id | noise length (BE) | noise message | random padding  |
    | 1 B  | 4 B random   | 2 B               |               | (init only)     |
    +------+--------------+-------------------+---------------+-----------------+

``type`` is ``0xE1`` (init, Noise message 1), ``0xE2`` (response, message 2)
or ``0xE3`` (finish, message 3). STUN messages start with two zero bits and
sealed transport packets have no fixed bytes, so the type byte plus the length
rules below tell a new handshake apart from everything else on a port.

The init is padded with random bytes to :data:`INIT_SIZE` (1200), and a
responder refuses a shorter one. Its response is never larger than the init,
so a spoofed init cannot make a node send more bytes than it received
(no amplification), as in QUIC.

The Noise payloads of messages 2 and 3 (encrypted by Noise) carry a
:class:`HandshakePayload`: the sender's certificate, or nothing for an
anonymous initiator (a client registering with the login server).
"""

from __future__ import annotations

from dataclasses import dataclass

from hopline.wire import ParamType, Record, param

INIT, RESPONSE, FINISH = 0xE1, 0xE2, 0xE3
TYPES = frozenset((INIT, RESPONSE, FINISH))
HEADER_SIZE = 7
INIT_SIZE = 1200
MAX_HANDSHAKE_SIZE = 1400


class HandshakePayload(Record):
    """What each side says about itself inside the encrypted handshake."""

    certificate: bytes | None = param(1, ParamType.BYTES, default=None)
    features: tuple[int, ...] = param(2, ParamType.UINTS, default=())


class FramingError(ValueError):
    """Not a handshake datagram (the caller counts it under ``reason``)."""

    reason = "handshake-framing"


@dataclass(frozen=True, slots=True)
class HandshakeDatagram:
    """A parsed handshake datagram."""

    kind: int
    handshake_id: bytes
    noise: bytes


def pack(kind: int, handshake_id: bytes, noise: bytes, padding: bytes = b"") -> bytes:
    """Build a handshake datagram (``padding`` only for an init)."""
    if kind not in TYPES or len(handshake_id) != 4 or len(noise) > 0xFFFF:
        raise ValueError("bad handshake datagram fields")
    return bytes([kind]) + handshake_id + len(noise).to_bytes(2, "big") + noise + padding


def init_padding_size(noise: bytes) -> int:
    """How many padding bytes bring an init to INIT_SIZE."""
    return max(0, INIT_SIZE - HEADER_SIZE - len(noise))


def looks_like_handshake(data: bytes) -> bool:
    """Cheap check: could ``data`` be a handshake datagram at all?"""
    return len(data) >= HEADER_SIZE and data[0] in TYPES


def unpack(data: bytes) -> HandshakeDatagram:
    """Parse a handshake datagram or raise :class:`FramingError`."""
    if not looks_like_handshake(data) or len(data) > MAX_HANDSHAKE_SIZE:
        raise FramingError("not a handshake datagram")
    kind = data[0]
    size = int.from_bytes(data[5:7], "big")
    end = HEADER_SIZE + size
    if end > len(data):
        raise FramingError("noise message longer than the datagram")
    if kind == INIT and len(data) < INIT_SIZE:
        raise FramingError("init shorter than the anti-amplification minimum")
    if kind != INIT and end != len(data):
        raise FramingError("trailing bytes after the noise message")
    return HandshakeDatagram(kind, data[1:5], data[HEADER_SIZE:end])
