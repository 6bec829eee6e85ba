"""The link packet format: one datagram = a one-byte header + one or more frames.

Every integer is unsigned big-endian (network order). A datagram is at most
``LinkConfig.mtu`` bytes (1200 by default) including the header. The layout,
byte by byte (offsets are relative to the start of the datagram or frame)::

    Datagram
      0     1  magic/version  0xD1: high nibble 0xD = Hopline link, low nibble 1 = version
      1     n  frames         one or more frames, back to back, until the end

    DATA frame (type 0x01 = reliable channel, 0x02 = unreliable channel), 11 + L bytes
      0     1  type           0x01 or 0x02
      1     4  seq            low 32 bits of the segment sequence number
      5     2  index          fragment index within its message, 0-based
      7     2  count          number of fragments of the message, >= 1, > index
      9     2  length         L, payload length
      11    L  payload        fragment bytes

    ACK frame (type 0x03), 8 + 4*N bytes -- only the reliable channel is acked
      0     1  type           0x03
      1     4  cumulative     low 32 bits of the next expected seq: every seq below it arrived
      5     2  delay          time the receiver held this ACK, in units of 10 microseconds
      7     1  N              number of (missing, received) range pairs that follow
      8   4*N  ranges         N times: missing (2 bytes, >= 1), received (2 bytes, >= 1)

    PING frame (type 0x04), 5 bytes      PONG frame (type 0x05), 5 bytes
      0     1  type           0x04         0     1  type    0x05
      1     4  token          any value    1     4  token   echo of a PING's token

    CLOSE frame (type 0x06), 2 bytes
      0     1  type           0x06
      1     1  code           0 = normal close, 1 = going away, 2 = protocol error;
                              other values are passed up unchanged

The ACK ranges walk upward from ``cumulative``: the first ``missing`` seqs
(starting at ``cumulative`` itself, which by definition has not arrived) are
NACKed, the next ``received`` seqs are selectively acknowledged (SACK), then
the next pair continues from there. ``cumulative = 10, ranges = [(2, 3),
(1, 1)]`` therefore says: 0..9 received, 10..11 missing, 12..14 received, 15
missing, 16 received.

Sequence numbers are unbounded integers inside the core; only their low 32
bits travel. :func:`expand_seq` recovers the full value as the one nearest a
reference (RFC 1982 serial-number style), which is unambiguous because the
send window is far smaller than 2**31.

The magic byte 0xD1 lies outside every range that RFC 7983 assigns for
demultiplexing STUN (0-3), DTLS (20-63), TURN channels (64-79) and RTP/RTCP
(128-191), so one UDP socket may later carry those too.

Decoding is all-or-nothing: :func:`decode_datagram` either returns every frame
or raises :class:`~hopline.transport.errors.MalformedPacket` with a ``reason``
(``empty``, ``bad_magic``, ``no_frames``, ``unknown_frame``, ``truncated``,
``bad_fragment``, ``bad_ack_range``) before the caller has
acted on any frame. ``docs/transport.md`` repeats this layout with hex test
vectors that the test suite checks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hopline.transport.errors import FrameEncodeError, MalformedPacket

__all__ = [
    "ACK_DELAY_UNIT",
    "ACK_FRAME_BASE",
    "ACK_RANGE_SIZE",
    "CLOSE_FRAME_SIZE",
    "DATA_FRAME_OVERHEAD",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_ACK_RANGES",
    "SEQ_MASK",
    "TOKEN_FRAME_SIZE",
    "AckFrame",
    "AckRange",
    "CloseFrame",
    "DataFrame",
    "DatagramBuilder",
    "Frame",
    "FrameType",
    "PingFrame",
    "PongFrame",
    "decode_datagram",
    "encode_datagram",
    "encode_frame",
    "expand_seq",
    "frame_size",
]

MAGIC = 0xD1
HEADER_SIZE = 1
DATA_FRAME_OVERHEAD = 11
ACK_FRAME_BASE = 8
ACK_RANGE_SIZE = 4
TOKEN_FRAME_SIZE = 5
CLOSE_FRAME_SIZE = 2
MAX_ACK_RANGES = 255
ACK_DELAY_UNIT = 1e-5
"""Seconds per unit of the ACK ``delay`` field (10 microseconds)."""

SEQ_BITS = 32
SEQ_MOD = 1 << SEQ_BITS
SEQ_MASK = SEQ_MOD - 1
_SEQ_HALF = SEQ_MOD >> 1
_U16 = 0xFFFF
_U8 = 0xFF

_DATA = struct.Struct(">IHHH")
_ACK = struct.Struct(">IHB")
_RANGE = struct.Struct(">HH")
_TOKEN = struct.Struct(">I")


class FrameType:
    """Frame type codes (the first byte of every frame)."""

    DATA_RELIABLE = 0x01
    DATA_UNRELIABLE = 0x02
    ACK = 0x03
    PING = 0x04
    PONG = 0x05
    CLOSE = 0x06


@dataclass(frozen=True, slots=True)
class DataFrame:
    """One fragment of a message on the reliable or the unreliable channel."""

    reliable: bool
    seq: int
    index: int
    count: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class AckRange:
    """``missing`` NACKed seqs followed by ``received`` SACKed seqs."""

    missing: int
    received: int


@dataclass(frozen=True, slots=True)
class AckFrame:
    """Cumulative + selective acknowledgement of the reliable channel."""

    cumulative: int
    delay: int
    ranges: tuple[AckRange, ...] = ()


@dataclass(frozen=True, slots=True)
class PingFrame:
    """Asks the peer to echo ``token`` in a :class:`PongFrame` (RTT probe, keep-alive)."""

    token: int


@dataclass(frozen=True, slots=True)
class PongFrame:
    """Answer to a :class:`PingFrame`."""

    token: int


@dataclass(frozen=True, slots=True)
class CloseFrame:
    """The sender closed the link; ``code`` 0 is a normal close."""

    code: int = 0


Frame = DataFrame | AckFrame | PingFrame | PongFrame | CloseFrame


def expand_seq(wire: int, reference: int) -> int:
    """Return the integer nearest ``reference`` whose low 32 bits are ``wire``."""
    candidate = (reference & ~SEQ_MASK) | (wire & SEQ_MASK)
    if candidate - reference > _SEQ_HALF:
        candidate -= SEQ_MOD
    elif reference - candidate >= _SEQ_HALF:
        candidate += SEQ_MOD
    return candidate


def frame_size(frame: Frame) -> int:
    """Return the encoded size of ``frame`` in bytes."""
    if isinstance(frame, DataFrame):
        return DATA_FRAME_OVERHEAD + len(frame.payload)
    if isinstance(frame, AckFrame):
        return ACK_FRAME_BASE + ACK_RANGE_SIZE * len(frame.ranges)
    if isinstance(frame, CloseFrame):
        return CLOSE_FRAME_SIZE
    return TOKEN_FRAME_SIZE


def _check(value: int, limit: int, name: str) -> None:
    if not 0 <= value <= limit:
        raise FrameEncodeError(f"{name} out of range: {value}")


def _encode_data(frame: DataFrame, out: bytearray) -> None:
    _check(frame.count, _U16, "count")
    _check(len(frame.payload), _U16, "payload length")
    if frame.count < 1 or not 0 <= frame.index < frame.count:
        raise FrameEncodeError(f"bad fragment {frame.index}/{frame.count}")
    out.append(FrameType.DATA_RELIABLE if frame.reliable else FrameType.DATA_UNRELIABLE)
    out += _DATA.pack(frame.seq & SEQ_MASK, frame.index, frame.count, len(frame.payload))
    out += frame.payload


def _encode_ack(frame: AckFrame, out: bytearray) -> None:
    _check(frame.delay, _U16, "ack delay")
    _check(len(frame.ranges), MAX_ACK_RANGES, "ack range count")
    out.append(FrameType.ACK)
    out += _ACK.pack(frame.cumulative & SEQ_MASK, frame.delay, len(frame.ranges))
    for rng in frame.ranges:
        _check(rng.missing, _U16, "missing")
        _check(rng.received, _U16, "received")
        if rng.missing < 1 or rng.received < 1:
            raise FrameEncodeError("ack ranges must be non-empty")
        out += _RANGE.pack(rng.missing, rng.received)


def encode_frame(frame: Frame, out: bytearray) -> None:
    """Append the encoding of ``frame`` to ``out``; raise FrameEncodeError if it cannot fit."""
    if isinstance(frame, DataFrame):
        _encode_data(frame, out)
    elif isinstance(frame, AckFrame):
        _encode_ack(frame, out)
    elif isinstance(frame, CloseFrame):
        _check(frame.code, _U8, "close code")
        out += bytes((FrameType.CLOSE, frame.code))
    else:
        _check(frame.token, SEQ_MASK, "token")
        kind = FrameType.PING if isinstance(frame, PingFrame) else FrameType.PONG
        out.append(kind)
        out += _TOKEN.pack(frame.token)


def encode_datagram(frames: Sequence[Frame]) -> bytes:
    """Encode a whole datagram (header + frames). Size limits are the caller's business."""
    out = bytearray((MAGIC,))
    for frame in frames:
        encode_frame(frame, out)
    return bytes(out)


class DatagramBuilder:
    """Packs frames into one datagram of at most ``max_size`` bytes."""

    __slots__ = ("_buf", "_count", "_max_size")

    def __init__(self, max_size: int) -> None:
        """Start an empty datagram (just the header byte)."""
        self._buf = bytearray((MAGIC,))
        self._max_size = max_size
        self._count = 0

    @property
    def remaining(self) -> int:
        """Bytes still free for frames."""
        return self._max_size - len(self._buf)

    @property
    def frame_count(self) -> int:
        """Number of frames added so far."""
        return self._count

    def add(self, frame: Frame) -> bool:
        """Append ``frame`` if it fits; return whether it was added."""
        if frame_size(frame) > self.remaining:
            return False
        encode_frame(frame, self._buf)
        self._count += 1
        return True

    def finish(self) -> bytes:
        """Return the datagram bytes."""
        return bytes(self._buf)


_Decoder = Callable[[bytes, int, int], tuple[Frame, int]]


def _need(pos: int, size: int, end: int) -> None:
    if pos + size > end:
        raise MalformedPacket("frame extends past the end of the datagram", reason="truncated")


def _decode_data(data: bytes, pos: int, end: int, *, reliable: bool) -> tuple[Frame, int]:
    _need(pos, _DATA.size, end)
    seq, index, count, length = _DATA.unpack_from(data, pos)
    pos += _DATA.size
    if count < 1 or index >= count:
        raise MalformedPacket(f"fragment {index}/{count}", reason="bad_fragment")
    _need(pos, length, end)
    return DataFrame(reliable, seq, index, count, data[pos : pos + length]), pos + length


def _decode_reliable(data: bytes, pos: int, end: int) -> tuple[Frame, int]:
    return _decode_data(data, pos, end, reliable=True)


def _decode_unreliable(data: bytes, pos: int, end: int) -> tuple[Frame, int]:
    return _decode_data(data, pos, end, reliable=False)


def _decode_ack(data: bytes, pos: int, end: int) -> tuple[Frame, int]:
    _need(pos, _ACK.size, end)
    cumulative, delay, count = _ACK.unpack_from(data, pos)
    pos += _ACK.size
    _need(pos, ACK_RANGE_SIZE * count, end)
    ranges = []
    for _ in range(count):
        missing, received = _RANGE.unpack_from(data, pos)
        pos += ACK_RANGE_SIZE
        if missing < 1 or received < 1:
            raise MalformedPacket("empty ack range", reason="bad_ack_range")
        ranges.append(AckRange(missing, received))
    return AckFrame(cumulative, delay, tuple(ranges)), pos


def _decode_ping(data: bytes, pos: int, end: int) -> tuple[Frame, int]:
    _need(pos, _TOKEN.size, end)
    return PingFrame(_TOKEN.unpack_from(data, pos)[0]), pos + _TOKEN.size


def _decode_pong(data: bytes, pos: int, end: int) -> tuple[Frame, int]:
    _need(pos, _TOKEN.size, end)
    return PongFrame(_TOKEN.unpack_from(data, pos)[0]), pos + _TOKEN.size


def _decode_close(data: bytes, pos: int, end: int) -> tuple[Frame, int]:
    _need(pos, 1, end)
    return CloseFrame(data[pos]), pos + 1


_DECODERS: dict[int, _Decoder] = {
    FrameType.DATA_RELIABLE: _decode_reliable,
    FrameType.DATA_UNRELIABLE: _decode_unreliable,
    FrameType.ACK: _decode_ack,
    FrameType.PING: _decode_ping,
    FrameType.PONG: _decode_pong,
    FrameType.CLOSE: _decode_close,
}


def decode_datagram(data: bytes) -> list[Frame]:
    """Decode every frame of ``data``; raise MalformedPacket (nothing else) if any is bad."""
    end = len(data)
    if end == 0:
        raise MalformedPacket("empty datagram", reason="empty")
    if data[0] != MAGIC:
        raise MalformedPacket(f"magic byte {data[0]:#04x}", reason="bad_magic")
    if end == HEADER_SIZE:
        raise MalformedPacket("datagram has no frame", reason="no_frames")
    frames: list[Frame] = []
    pos = HEADER_SIZE
    while pos < end:
        decoder = _DECODERS.get(data[pos])
        if decoder is None:
            raise MalformedPacket(f"frame type {data[pos]:#04x}", reason="unknown_frame")
        frame, pos = decoder(data, pos + 1, end)
        frames.append(frame)
    return frames
