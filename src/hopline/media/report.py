"""Receiver reports: what one side of a call tells the other about the media it gets.

A report is one datagram on the same unreliable (already sealed) channel as
the media packets, in the spirit of an RTCP receiver report. The first byte
tells payloads apart: media packets are ``0x80-0x8F``, wire messages
``0x10-0x13``, relay frames ``0x40-0x7F``; a report is ``0xA0 | version``,
so version 1 is **0xA1**. Layout (big-endian), 31 bytes::

    0xA1 | highest_seq: 4 | cumulative_lost: 4 | fraction_lost: 1
         | jitter_us: 4 | jb_delay_ms: 2 | mean_burst_x10: 2
         | sent_at_ms: 4 | echo_ms: 4 | echo_delay_ms: 4 | flags: 1

* ``highest_seq`` — highest *extended* media sequence number received;
* ``cumulative_lost`` — packets expected minus packets received, never
  negative;
* ``fraction_lost`` — loss since the previous report, ``0..255`` meaning
  ``0..255/256`` (as in RTCP);
* ``jitter_us`` — RFC 3550 interarrival jitter, microseconds;
* ``jb_delay_ms`` — the receiver's current jitter-buffer delay;
* ``mean_burst_x10`` — mean length of the loss bursts since the previous
  report, times ten (0 when nothing was lost), so the sender can tell
  bursty loss from random loss;
* ``sent_at_ms`` — the reporter's own clock, milliseconds modulo 2**32;
* ``echo_ms``/``echo_delay_ms`` — the ``sent_at_ms`` of the last report
  received from the peer and how long ago it arrived, valid when flag bit 0
  is set. The peer then computes the round-trip time from its own clock
  alone: ``rtt = now - echo_ms - echo_delay_ms`` (as RTCP's LSR/DLSR).

One table, :data:`FIELDS`, drives both :func:`encode_report` and
:func:`decode_report` (the shape of aioice's STUN attribute table): each row
is a field name, its ``struct`` code and its largest value. Decoding checks
the type byte, the exact length, reserved flag bits and every range, and
raises only :class:`~hopline.media.packet.MediaPacketError` (``reason`` is a
counter key such as ``report:length``).

:class:`ReceptionStats` is the receiving side's bookkeeping that fills the
loss fields: extended sequence numbers, expected versus received packets,
the fraction lost and the loss bursts in each report interval.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hopline.media.packet import MediaPacketError

__all__ = [
    "FIELDS",
    "DUPLICATE_WINDOW",
    "REPORT_TYPE",
    "REPORT_VERSION",
    "ReceiverReport",
    "ReceptionStats",
    "decode_report",
    "encode_report",
    "is_report",
    "stamp_ms",
]

REPORT_VERSION = 1
REPORT_TYPE = 0xA0 | REPORT_VERSION
_TYPE_MASK = 0xF0
_TYPE_BASE = 0xA0
FLAG_ECHO = 0x01
_U8, _U16, _U32 = 0xFF, 0xFFFF, 0xFFFF_FFFF
_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15
_MS_MOD = 1 << 32
DUPLICATE_WINDOW = 1024
"""Sequence numbers this far below the highest are treated as replays and not counted."""

FIELDS: tuple[tuple[str, str, int], ...] = (
    ("highest_seq", "I", _U32),
    ("cumulative_lost", "I", _U32),
    ("fraction_lost", "B", _U8),
    ("jitter_us", "I", _U32),
    ("jb_delay_ms", "H", _U16),
    ("mean_burst_x10", "H", _U16),
    ("sent_at_ms", "I", _U32),
    ("echo_ms", "I", _U32),
    ("echo_delay_ms", "I", _U32),
    ("flags", "B", FLAG_ECHO),
)
"""(name, struct code, largest value) of every field after the type byte, in order."""

_STRUCT = struct.Struct(">B" + "".join(code for _, code, _ in FIELDS))
REPORT_SIZE = _STRUCT.size


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """One receiver report; field meanings are in the module docs."""

    highest_seq: int
    cumulative_lost: int
    fraction_lost: int
    jitter_us: int
    jb_delay_ms: int
    mean_burst_x10: int
    sent_at_ms: int
    echo_ms: int = 0
    echo_delay_ms: int = 0
    flags: int = 0

    @property
    def loss(self) -> float:
        """``fraction_lost`` as a fraction, 0..~1."""
        return self.fraction_lost / 256

    @property
    def mean_burst(self) -> float:
        """Mean loss-burst length in packets (0 when nothing was lost)."""
        return self.mean_burst_x10 / 10

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter in milliseconds."""
        return self.jitter_us / 1000

    @property
    def has_echo(self) -> bool:
        """Whether ``echo_ms``/``echo_delay_ms`` are valid."""
        return bool(self.flags & FLAG_ECHO)

    def rtt_ms(self, now_ms: int) -> float | None:
        """Round-trip time seen by the peer whose clock reads ``now_ms`` (mod 2**32)."""
        if not self.has_echo:
            return None
        return float((now_ms - self.echo_ms - self.echo_delay_ms) % _MS_MOD)


def stamp_ms(now: float) -> int:
    """A clock reading in seconds as the 32-bit millisecond stamp reports carry."""
    return round(now * 1000) % _MS_MOD


def is_report(data: bytes) -> bool:
    """Whether ``data`` starts like a report (first byte 0xA0-0xAF)."""
    return bool(data) and data[0] & _TYPE_MASK == _TYPE_BASE


def _values(report: ReceiverReport) -> list[int]:
    values = []
    for name, _, largest in FIELDS:
        value = getattr(report, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
            raise MediaPacketError(f"report:{name}-range")
        values.append(value)
    return values


def encode_report(report: ReceiverReport) -> bytes:
    """The datagram for ``report``; :class:`MediaPacketError` when a field is out of range."""
    return _STRUCT.pack(REPORT_TYPE, *_values(report))


def decode_report(data: bytes) -> ReceiverReport:
    """Parse a report datagram; raises only :class:`MediaPacketError`."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MediaPacketError("report:type")
    if len(data) != REPORT_SIZE:
        raise MediaPacketError("report:length")
    if data[0] & _TYPE_MASK != _TYPE_BASE:
        raise MediaPacketError("report:not-report")
    if data[0] != REPORT_TYPE:
        raise MediaPacketError("report:version")
    values = _STRUCT.unpack(bytes(data))[1:]
    for (name, _, largest), value in zip(FIELDS, values, strict=True):
        if value > largest:
            raise MediaPacketError(f"report:{name}-range")
    return ReceiverReport(*values)


class ReceptionStats:
    """Receiving-side loss bookkeeping for reports (RFC 3550 A.3 style).

    Feed every media packet's 16-bit sequence number (primary frames only);
    a sequence number seen within the last :data:`DUPLICATE_WINDOW` is a
    duplicate and is not counted. :meth:`interval` closes a report interval.
    """

    def __init__(self) -> None:
        """Nothing received yet."""
        self._base: int | None = None
        self.highest: int = -1
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._interval_start = 0
        self._seen: set[int] = set()
        self._recent: set[int] = set()

    def on_packet(self, seq: int) -> int | None:
        """Count one received packet: its extended sequence number, ``None`` for a duplicate."""
        if self._base is None:
            self._base = self.highest = self._interval_start = seq
            ext = seq
        else:
            delta = (seq - self.highest) % _SEQ_MOD
            ext = self.highest + (delta - _SEQ_MOD if delta >= _SEQ_HALF else delta)
            if ext in self._recent or ext <= self.highest - DUPLICATE_WINDOW:
                return None
            self.highest = max(self.highest, ext)
        self.received += 1
        self._remember(ext)
        if ext >= self._interval_start:
            self._seen.add(ext)
            if len(self._seen) > 2 * DUPLICATE_WINDOW:  # only the last window counts (_bursts)
                floor = self.highest - DUPLICATE_WINDOW
                self._seen = {s for s in self._seen if s > floor}
        return ext

    def _remember(self, ext: int) -> None:
        self._recent.add(ext)
        if len(self._recent) > 2 * DUPLICATE_WINDOW:
            floor = self.highest - DUPLICATE_WINDOW
            self._recent = {s for s in self._recent if s > floor}

    @property
    def expected(self) -> int:
        """Packets the sender sent from the first one seen to the highest."""
        return 0 if self._base is None else self.highest - self._base + 1

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received, clamped at zero."""
        return max(0, self.expected - self.received)

    @property
    def loss(self) -> float:
        """Loss fraction over the whole stream so far."""
        return self.cumulative_lost / self.expected if self.expected else 0.0

    def interval(self) -> tuple[int, int]:
        """Close the interval: ``(fraction_lost 0..255, mean_burst_x10)``, then start anew."""
        expected = self.expected - self._expected_prior
        lost = expected - (self.received - self._received_prior)
        self._expected_prior, self._received_prior = self.expected, self.received
        fraction = 0 if expected <= 0 or lost <= 0 else min(255, (lost << 8) // expected)
        bursts = self._bursts()
        self._interval_start = self.highest + 1
        self._seen.clear()
        mean_x10 = round(10 * sum(bursts) / len(bursts)) if bursts else 0
        return fraction, min(_U16, mean_x10)

    def _bursts(self) -> list[int]:
        """Lengths of the runs of missing sequence numbers in this interval.

        At most the last :data:`DUPLICATE_WINDOW` numbers are looked at, so a
        jump in the peer's numbering costs bounded work.
        """
        runs: list[int] = []
        run = 0
        first = max(self._interval_start, self.highest + 1 - DUPLICATE_WINDOW)
        for ext in range(first, self.highest + 1):
            if ext in self._seen:
                if run:
                    runs.append(run)
                run = 0
            else:
                run += 1
        return runs
