"""Media packet codec: round trips, bounds, fuzzing, and the Packetizer's redundancy."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.media.packet import (
    FLAG_FEC,
    FLAG_MARKER,
    MAX_FRAME,
    MAX_PACKET,
    MEDIA_VERSION,
    MediaFrame,
    MediaPacket,
    MediaPacketError,
    Packetizer,
    decode_packet,
    encode_packet,
    is_media_packet,
)

payloads = st.binary(min_size=1, max_size=300)


@st.composite
def packets(draw: st.DrawFn) -> MediaPacket:
    seq = draw(st.integers(0, 0xFFFF))
    ts = draw(st.integers(0, 0xFFFFFFFF))
    backs = sorted(draw(st.sets(st.integers(1, 255), max_size=4)), reverse=True)
    redundant = tuple(
        MediaFrame(
            (seq - back) % 65536,
            (ts - draw(st.integers(0, 0xFFFF))) % (1 << 32),
            draw(payloads),
        )
        for back in backs
    )
    flags = draw(st.sampled_from([0, FLAG_MARKER, FLAG_FEC, FLAG_MARKER | FLAG_FEC]))
    return MediaPacket(MEDIA_VERSION, flags, seq, ts, draw(payloads), redundant)


@given(packets())
@settings(max_examples=500)
def test_round_trip(packet: MediaPacket) -> None:
    data = encode_packet(packet)
    assert is_media_packet(data)
    assert decode_packet(data) == packet
    assert len(data) <= MAX_PACKET


@given(st.binary(max_size=1500))
@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_raise_only_media_errors(data: bytes) -> None:
    with contextlib.suppress(MediaPacketError):
        decode_packet(data)


@given(st.binary(min_size=7, max_size=200))
@settings(max_examples=3000)
def test_media_looking_bytes_raise_only_media_errors(data: bytes) -> None:
    with contextlib.suppress(MediaPacketError):
        packet = decode_packet(b"\x81" + data)
        # whatever decodes must encode back to the same bytes
        assert encode_packet(packet) == b"\x81" + data


def test_layout_is_compact_and_documented() -> None:
    packet = MediaPacket(
        1, FLAG_FEC, 10, 9600, b"P", (MediaFrame(8, 7680, b"aa"), MediaFrame(9, 8640, b"b"))
    )
    data = encode_packet(packet)
    assert data == (
        b"\x81" + bytes([FLAG_FEC | 2 << 2]) + b"\x00\x0a" + (9600).to_bytes(4, "big")
        + b"\x02\x07\x80\x00\x02" + b"\x01\x03\xc0\x00\x01" + b"aa" + b"b" + b"P"
    )  # fmt: skip


def test_first_byte_differs_from_other_unreliable_payloads() -> None:
    data = encode_packet(MediaPacket(1, 0, 0, 0, b"x"))
    assert data[0] == 0x81
    for other in [0x10, 0x11, 0x12, 0x13, *range(0x40, 0x80)]:
        assert not is_media_packet(bytes([other]) + data[1:])
        with pytest.raises(MediaPacketError, match="not-media"):
            decode_packet(bytes([other]) + data[1:])


@pytest.mark.parametrize(
    ("packet", "reason"),
    [
        (MediaPacket(1, 0, 0, 0, b""), "empty-frame"),
        (MediaPacket(1, 0, 0, 0, b"x" * (MAX_FRAME + 1)), "frame-too-large"),
        (MediaPacket(2, 0, 0, 0, b"x"), "version"),
        (MediaPacket(1, 0x80, 0, 0, b"x"), "flags"),
        (MediaPacket(1, 0, 65536, 0, b"x"), "header-range"),
        (MediaPacket(1, 0, 5, 0, b"x", (MediaFrame(5, 0, b"y"),)), "redundant-seq-range"),
        (MediaPacket(1, 0, 300, 0, b"x", (MediaFrame(0, 0, b"y"),)), "redundant-seq-range"),
        (MediaPacket(1, 0, 5, 70000, b"x", (MediaFrame(4, 0, b"y"),)), "redundant-ts-range"),
        (
            MediaPacket(1, 0, 5, 0, b"x", (MediaFrame(4, 0, b"y"), MediaFrame(3, 0, b"z"))),
            "redundant-order",
        ),
        (
            MediaPacket(1, 0, 9, 0, b"x", tuple(MediaFrame(i, 0, b"y") for i in range(5))),
            "too-many-redundant",
        ),
        (
            MediaPacket(1, 0, 9, 0, b"x" * 1000, (MediaFrame(8, 0, b"y" * 1000),)),
            "packet-too-large",
        ),
    ],
)
def test_encode_rejects_out_of_bounds(packet: MediaPacket, reason: str) -> None:
    with pytest.raises(MediaPacketError) as info:
        encode_packet(packet)
    assert info.value.reason == f"media:{reason}"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated"),
        (b"\x81\x00\x00\x00\x00\x00\x00", "truncated"),
        (b"\x81\x00\x00\x00\x00\x00\x00\x00", "empty-frame"),
        (b"\x82\x00\x00\x00\x00\x00\x00\x00x", "version"),
        (b"\x81\x20\x00\x00\x00\x00\x00\x00x", "flags"),
        (b"\x81\x14\x00\x00\x00\x00\x00\x00x", "too-many-redundant"),
        (b"\x81\x04\x00\x05\x00\x00\x00\x00\x01\x00\x00\x00\x09x", "truncated"),
        (b"\x81\x04\x00\x05\x00\x00\x00\x00\x00\x00\x00\x00\x01xy", "redundant-order"),
        (b"\x81\x04\x00\x05\x00\x00\x00\x00\x01\x00\x00\x00\x00xy", "frame-length"),
        (b"\x81\x00" + bytes(6) + b"x" * MAX_PACKET, "packet-too-large"),
    ],
)
def test_decode_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(MediaPacketError) as info:
        decode_packet(data)
    assert info.value.reason == f"media:{reason}"


def test_sequence_and_timestamp_wrap_in_redundancy() -> None:
    packet = MediaPacket(1, 0, 1, 100, b"p", (MediaFrame(65535, (100 - 960) % (1 << 32), b"r"),))
    assert decode_packet(encode_packet(packet)) == packet


def test_packetizer_repeats_last_frames_and_wraps() -> None:
    packer = Packetizer(2, first_seq=65534, first_timestamp=(1 << 32) - 960)
    decoded = [decode_packet(packer.pack(bytes([i + 1]))) for i in range(4)]
    assert [p.seq for p in decoded] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in decoded] == [(1 << 32) - 960, 0, 960, 1920]
    assert decoded[0].redundant == ()
    assert decoded[1].redundant == (decoded[0].frame,)
    assert decoded[3].redundant == (decoded[1].frame, decoded[2].frame)
    assert decoded[3].frames()[-1] == MediaFrame(1, 1920, b"\x04")


def test_packetizer_set_redundancy_and_flags() -> None:
    packer = Packetizer(0)
    for i in range(5):
        packer.pack(bytes([i + 1]))
    assert packer.build(b"a").redundant == ()
    packer.set_redundancy(4)
    packet = decode_packet(packer.pack(b"b", marker=True, fec=True))
    assert [f.seq for f in packet.redundant] == [2, 3, 4, 5]
    assert packet.marker and packet.fec
    with pytest.raises(ValueError, match="redundancy"):
        packer.set_redundancy(5)


def test_packetizer_drops_oldest_redundancy_to_fit_size() -> None:
    packer = Packetizer(4)
    for _ in range(4):
        packer.pack(b"x" * 600)
    data = packer.pack(b"y" * 600)
    packet = decode_packet(data)
    assert len(data) <= MAX_PACKET
    assert [f.seq for f in packet.redundant] == [3]
