"""Handshake datagrams: the init is the only datagram of a flow with a header.

The first Noise message (the *init*) is sent as::

    +------+-------------------+---------------------+-----------------+
    | 0xE1 | noise length (BE) | noise message 1     | random padding  |
    | 1 B  | 2 B               | (ephemeral key)     | to 1200 bytes   |
    +------+-------------------+---------------------+-----------------+

Every later datagram, the responder's Noise message 2, the initiator's
message 3 and all sealed transport packets, is sent bare: Noise messages 2
and 3 are an ephemeral key with a random top bit and ciphertext, transport
packets have a masked header (see hopline.crypto.session), so after the
init's header no byte of a flow is predictable. Each side tells them apart
by its own state: a responder waiting for message 3 tries to read it and
treats an unreadable datagram as early transport data (message 3 was lost);
an exact repeat of a handshake datagram already processed means our answer
to it was lost and is sent again.

``0xE1`` differs from the first byte of STUN (two zero bits) and an init is
at least 1200 bytes, so a new handshake is recognised on any port. The init
is padded with random bytes to :data:`INIT_SIZE` and a responder refuses a
shorter one; its answer is never larger than the init, so a spoofed init
cannot make a node send more bytes than it received (as in QUIC).

The Noise payloads of messages 2 and 3 (encrypted by Noise) carry a
:class:`HandshakePayload`: the sender's certificate, or nothing for an
anonymous initiator (a client registering with the login server).
"""

from __future__ import annotations

from hopline.wire import ParamType, Record, param

INIT = 0xE1
INIT_HEADER_SIZE = 3
INIT_SIZE = 1200
MAX_HANDSHAKE_SIZE = 1400


class HandshakePayload(Record):
    """What each side says about itself inside the encrypted handshake."""

    certificate: bytes | None = param(1, ParamType.BYTES, default=None)
    features: tuple[int, ...] = param(2, ParamType.UINTS, default=())


class FramingError(ValueError):
    """Not a valid init (the caller counts it under ``reason``)."""

    reason = "handshake-framing"


def pack_init(noise: bytes, random_bytes: bytes) -> bytes:
    """An init datagram: header, Noise message 1, random padding to INIT_SIZE.

    ``random_bytes`` supplies the padding; it must hold at least
    :func:`padding_size` bytes.
    """
    if len(noise) > INIT_SIZE - INIT_HEADER_SIZE:
        raise ValueError("Noise message 1 does not fit an init")
    padding = random_bytes[: padding_size(noise)]
    return bytes([INIT]) + len(noise).to_bytes(2, "big") + noise + padding


def padding_size(noise: bytes) -> int:
    """How many padding bytes bring an init with ``noise`` to INIT_SIZE."""
    return INIT_SIZE - INIT_HEADER_SIZE - len(noise)


def looks_like_init(data: bytes) -> bool:
    """Cheap check: could ``data`` be an init?"""
    return INIT_SIZE <= len(data) <= MAX_HANDSHAKE_SIZE and data[0] == INIT


def unpack_init(data: bytes) -> bytes:
    """The Noise message of an init, or :class:`FramingError`."""
    if not looks_like_init(data):
        raise FramingError("not an init of at least 1200 bytes")
    end = INIT_HEADER_SIZE + int.from_bytes(data[1:3], "big")
    if end > len(data):
        raise FramingError("noise message longer than the datagram")
    return data[INIT_HEADER_SIZE:end]
