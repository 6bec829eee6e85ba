"""Media packets: one Opus frame plus up to four earlier frames as redundancy.

A media packet travels as one datagram on the peer path's *unreliable*
channel, already sealed end to end by the secure session, so this layer
carries no authentication of its own. Layout (all integers big-endian)::

    +--------+--------+---------+-------------+
    | 0x81   | flags  | seq: 2  | timestamp: 4|      8-byte header
    +--------+--------+---------+-------------+
    | per redundant frame, oldest first:       |
    |   seq back: 1 | ts back: 2 | length: 2   |      5 bytes each
    +------------------------------------------+
    | redundant payloads, in the same order    |
    | primary payload: the rest of the datagram|
    +------------------------------------------+

First byte: ``0x80 | version`` (version 1, so ``0x81``); a decoder accepts
only ``0x80-0x8F`` with its own version. Other payloads on the unreliable
channel start with ``0x10-0x13`` (a wire message, version 1) or
``0x40-0x7F`` (a relay channel-data frame, see
:mod:`hopline.relay.framing`), so the high bit alone tells media apart.

Flags: bit 0 marker (first packet after silence), bit 1 FEC (the primary
frame carries Opus in-band FEC for the frame before it), bits 2-4 the
number of redundant frames (0-4), bits 5-7 reserved and zero.

A redundant frame is stored as offsets back from the primary: sequence
``1-255`` earlier and timestamp ``0-65535`` samples earlier, so each costs
five bytes of header. Every frame is 1-1275 bytes (the Opus maximum) and
a whole packet at most 1400 bytes. :func:`decode_packet` raises only
:class:`MediaPacketError` on any input; its ``reason`` is a counter key.

:class:`Packetizer` is the sending side: it numbers frames, remembers the
last few and repeats ``redundancy`` of them in each packet (the classic
client repeated one to four past frames when loss was heavy). The repeats
are the frames 1, 2, 3, 4 back, or with ``spread`` 1, 2, 4, 8 back: spread
copies bridge loss bursts up to eight packets long with the same four
copies, at the price of a receiver that waits longer for them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = [
    "FLAG_FEC",
    "FLAG_MARKER",
    "MAX_FRAME",
    "MAX_PACKET",
    "MAX_REDUNDANT",
    "SPREAD_OFFSETS",
    "MEDIA_VERSION",
    "MediaFrame",
    "MediaPacket",
    "MediaPacketError",
    "Packetizer",
    "decode_packet",
    "encode_packet",
    "is_media_packet",
]

MEDIA_VERSION = 1
FIRST_BYTE_BASE = 0x80
HEADER_SIZE = 8
BLOCK_SIZE = 5
MAX_FRAME = 1275
MAX_PACKET = 1400
MAX_REDUNDANT = 4
SPREAD_OFFSETS = (1, 2, 4, 8)
"""Sequence offsets of the repeated frames with spread redundancy."""
_HISTORY = SPREAD_OFFSETS[-1]
MAX_SEQ_BACK = 0xFF
MAX_TS_BACK = 0xFFFF
FLAG_MARKER = 0x01
FLAG_FEC = 0x02
_COUNT_SHIFT = 2
_COUNT_MASK = 0x07
_RESERVED_MASK = 0xE0
_SEQ_MOD = 1 << 16
_TS_MOD = 1 << 32


class MediaPacketError(ValueError):
    """A datagram (or packet) that is no valid media packet; ``reason`` is a counter key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One coded 20 ms frame: 16-bit sequence, 32-bit timestamp (48 kHz samples), payload."""

    seq: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class MediaPacket:
    """A decoded media packet: the primary frame and earlier frames repeated with it."""

    version: int
    flags: int
    seq: int
    timestamp: int
    primary: bytes
    redundant: tuple[MediaFrame, ...] = ()

    @property
    def marker(self) -> bool:
        """Whether this is the first packet after a pause."""
        return bool(self.flags & FLAG_MARKER)

    @property
    def fec(self) -> bool:
        """Whether the primary frame carries Opus in-band FEC."""
        return bool(self.flags & FLAG_FEC)

    @property
    def frame(self) -> MediaFrame:
        """The primary frame as a :class:`MediaFrame`."""
        return MediaFrame(self.seq, self.timestamp, self.primary)

    def frames(self) -> tuple[MediaFrame, ...]:
        """Redundant frames (oldest first), then the primary."""
        return (*self.redundant, self.frame)


def is_media_packet(data: bytes) -> bool:
    """Whether ``data`` starts like a media packet (first byte 0x80-0x8F)."""
    return bool(data) and data[0] & 0xF0 == FIRST_BYTE_BASE


def _check_payload(payload: bytes) -> None:
    if not payload:
        raise MediaPacketError("media:empty-frame")
    if len(payload) > MAX_FRAME:
        raise MediaPacketError("media:frame-too-large")


def _offsets(packet: MediaPacket, frame: MediaFrame) -> tuple[int, int]:
    seq_back = (packet.seq - frame.seq) % _SEQ_MOD
    ts_back = (packet.timestamp - frame.timestamp) % _TS_MOD
    if not 1 <= seq_back <= MAX_SEQ_BACK:
        raise MediaPacketError("media:redundant-seq-range")
    if ts_back > MAX_TS_BACK:
        raise MediaPacketError("media:redundant-ts-range")
    return seq_back, ts_back


def _check_header(packet: MediaPacket) -> None:
    if packet.version != MEDIA_VERSION:
        raise MediaPacketError("media:version")
    if packet.flags & ~(FLAG_MARKER | FLAG_FEC):
        raise MediaPacketError("media:flags")
    if not 0 <= packet.seq < _SEQ_MOD or not 0 <= packet.timestamp < _TS_MOD:
        raise MediaPacketError("media:header-range")
    if len(packet.redundant) > MAX_REDUNDANT:
        raise MediaPacketError("media:too-many-redundant")


def encode_packet(packet: MediaPacket) -> bytes:
    """The datagram for ``packet``; :class:`MediaPacketError` if it breaks a bound.

    Redundant frames must be strictly older than the primary, oldest first.
    """
    _check_header(packet)
    _check_payload(packet.primary)
    blocks = bytearray()
    previous = MAX_SEQ_BACK + 1
    for frame in packet.redundant:
        _check_payload(frame.payload)
        seq_back, ts_back = _offsets(packet, frame)
        if seq_back >= previous:
            raise MediaPacketError("media:redundant-order")
        previous = seq_back
        blocks += bytes((seq_back,)) + ts_back.to_bytes(2, "big")
        blocks += len(frame.payload).to_bytes(2, "big")
    flags = packet.flags | len(packet.redundant) << _COUNT_SHIFT
    header = bytes((FIRST_BYTE_BASE | packet.version, flags))
    header += packet.seq.to_bytes(2, "big") + packet.timestamp.to_bytes(4, "big")
    body = b"".join(frame.payload for frame in packet.redundant) + packet.primary
    data = header + bytes(blocks) + body
    if len(data) > MAX_PACKET:
        raise MediaPacketError("media:packet-too-large")
    return data


def _decode_blocks(
    data: bytes, count: int, seq: int, timestamp: int
) -> tuple[list[tuple[int, int, int]], int]:
    """``[(seq, timestamp, length)]`` of the redundant frames and where payloads start."""
    pos = HEADER_SIZE
    if len(data) < pos + count * BLOCK_SIZE:
        raise MediaPacketError("media:truncated")
    blocks: list[tuple[int, int, int]] = []
    previous = MAX_SEQ_BACK + 1
    for _ in range(count):
        seq_back = data[pos]
        ts_back = int.from_bytes(data[pos + 1 : pos + 3], "big")
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if not 1 <= seq_back < previous:
            raise MediaPacketError("media:redundant-order")
        if not 1 <= length <= MAX_FRAME:
            raise MediaPacketError("media:frame-length")
        previous = seq_back
        blocks.append(((seq - seq_back) % _SEQ_MOD, (timestamp - ts_back) % _TS_MOD, length))
        pos += BLOCK_SIZE
    return blocks, pos


def decode_packet(data: bytes) -> MediaPacket:
    """Parse a media datagram; raises only :class:`MediaPacketError`."""
    if len(data) > MAX_PACKET:
        raise MediaPacketError("media:packet-too-large")
    if len(data) < HEADER_SIZE:
        raise MediaPacketError("media:truncated")
    if data[0] & 0xF0 != FIRST_BYTE_BASE:
        raise MediaPacketError("media:not-media")
    if data[0] & 0x0F != MEDIA_VERSION:
        raise MediaPacketError("media:version")
    if data[1] & _RESERVED_MASK:
        raise MediaPacketError("media:flags")
    count = data[1] >> _COUNT_SHIFT & _COUNT_MASK
    if count > MAX_REDUNDANT:
        raise MediaPacketError("media:too-many-redundant")
    seq = int.from_bytes(data[2:4], "big")
    timestamp = int.from_bytes(data[4:8], "big")
    blocks, pos = _decode_blocks(data, count, seq, timestamp)
    redundant: list[MediaFrame] = []
    for frame_seq, frame_ts, length in blocks:
        if pos + length > len(data):
            raise MediaPacketError("media:truncated")
        redundant.append(MediaFrame(frame_seq, frame_ts, bytes(data[pos : pos + length])))
        pos += length
    primary = bytes(data[pos:])
    _check_payload(primary)
    flags = data[1] & (FLAG_MARKER | FLAG_FEC)
    return MediaPacket(MEDIA_VERSION, flags, seq, timestamp, primary, tuple(redundant))


class Packetizer:
    """Numbers outgoing frames and repeats the last ``redundancy`` of them in each packet.

    Frames that no longer fit (packet size, sequence or timestamp offsets)
    are left out, oldest first; the primary frame always goes.
    """

    def __init__(
        self,
        redundancy: int = 0,
        *,
        first_seq: int = 0,
        first_timestamp: int = 0,
        frame_samples: int = 960,
    ) -> None:
        """Start numbering at ``first_seq``/``first_timestamp`` (random per call, ideally)."""
        self._redundancy = 0
        self._spread = False
        self.set_redundancy(redundancy)
        self._seq = first_seq % _SEQ_MOD
        self._timestamp = first_timestamp % _TS_MOD
        self._frame_samples = frame_samples
        self._history: deque[MediaFrame] = deque(maxlen=_HISTORY)

    @property
    def redundancy(self) -> int:
        """How many earlier frames each packet repeats (0-4)."""
        return self._redundancy

    @property
    def spread(self) -> bool:
        """Whether the repeated frames are 1, 2, 4, 8 back (else 1, 2, 3, 4)."""
        return self._spread

    @property
    def offsets(self) -> tuple[int, ...]:
        """How far back (in frames) each repeated frame is, nearest first."""
        if self._spread:
            return SPREAD_OFFSETS[: self._redundancy]
        return tuple(range(1, self._redundancy + 1))

    def set_redundancy(self, n: int, *, spread: bool = False) -> None:
        """Repeat ``n`` (0-4) earlier frames from the next packet on, ``spread`` out or not."""
        if not 0 <= n <= MAX_REDUNDANT:
            raise ValueError(f"redundancy {n} outside 0-{MAX_REDUNDANT}")
        self._redundancy = n
        self._spread = bool(spread)

    def build(self, payload: bytes, *, marker: bool = False, fec: bool = False) -> MediaPacket:
        """The next packet carrying ``payload``; advances sequence and timestamp."""
        _check_payload(payload)
        flags = (FLAG_MARKER if marker else 0) | (FLAG_FEC if fec else 0)
        packet = MediaPacket(MEDIA_VERSION, flags, self._seq, self._timestamp, payload)
        packet = self._with_redundancy(packet)
        self._history.append(packet.frame)
        self._seq = (self._seq + 1) % _SEQ_MOD
        self._timestamp = (self._timestamp + self._frame_samples) % _TS_MOD
        return packet

    def pack(self, payload: bytes, *, marker: bool = False, fec: bool = False) -> bytes:
        """:meth:`build` then :func:`encode_packet`."""
        return encode_packet(self.build(payload, marker=marker, fec=fec))

    def _with_redundancy(self, packet: MediaPacket) -> MediaPacket:
        history = list(self._history)
        chosen = [history[-k] for k in reversed(self.offsets) if k <= len(history)]
        usable = [frame for frame in chosen if _fits_offsets(packet, frame)]
        size = HEADER_SIZE + len(packet.primary)
        while usable and size + sum(BLOCK_SIZE + len(f.payload) for f in usable) > MAX_PACKET:
            usable.pop(0)
        return MediaPacket(
            packet.version,
            packet.flags,
            packet.seq,
            packet.timestamp,
            packet.primary,
            tuple(usable),
        )


def _fits_offsets(packet: MediaPacket, frame: MediaFrame) -> bool:
    try:
        _offsets(packet, frame)
    except MediaPacketError:
        return False
    return True
