"""The link packet format: documented vectors, round trips, and refusal of bad bytes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.transport.errors import FrameEncodeError, MalformedPacket
from hopline.transport.packet import (
    MAGIC,
    AckFrame,
    AckRange,
    CloseFrame,
    DataFrame,
    DatagramBuilder,
    Frame,
    PingFrame,
    PongFrame,
    decode_datagram,
    encode_datagram,
    expand_seq,
    frame_size,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "transport.md"

EXPECTED_VECTORS: dict[str, list[Frame]] = {
    "ping": [PingFrame(42)],
    "reliable-data": [DataFrame(True, 5, 0, 1, b"hi")],
    "ack-with-ranges": [AckFrame(10, 100, (AckRange(2, 3), AckRange(1, 1)))],
    "ack-and-unreliable-fragment": [
        AckFrame(7, 0, ()),
        DataFrame(False, 0xFFFFFFFF, 1, 3, b"\x00\xff"),
    ],
    "pong-and-close": [PongFrame(0xDEADBEEF), CloseFrame(0)],
}


def doc_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    pattern = re.compile(r"#### Vector \d+: `([\w-]+)`.*?```hex\n(.*?)```", re.S)
    return {name: bytes.fromhex(body) for name, body in pattern.findall(text)}


def test_doc_has_at_least_three_vectors_and_all_are_known() -> None:
    vectors = doc_vectors()
    assert len(vectors) >= 3
    assert set(vectors) == set(EXPECTED_VECTORS)


@pytest.mark.parametrize("name", sorted(EXPECTED_VECTORS))
def test_doc_vector_decodes_and_encodes(name: str) -> None:
    wire = doc_vectors()[name]
    assert decode_datagram(wire) == EXPECTED_VECTORS[name]
    assert encode_datagram(EXPECTED_VECTORS[name]) == wire


def test_seq_beyond_32_bits_travels_as_low_bits() -> None:
    wire = encode_datagram([AckFrame((1 << 32) + 7, 0, ())])
    assert wire == doc_vectors()["ack-and-unreliable-fragment"][:9]


# -- round trips --------------------------------------------------------------

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)


@st.composite
def data_frames(draw: st.DrawFn) -> DataFrame:
    count = draw(st.integers(1, 0xFFFF))
    index = draw(st.integers(0, count - 1))
    return DataFrame(draw(st.booleans()), draw(u32), index, count, draw(st.binary(max_size=64)))


ack_frames = st.builds(
    AckFrame,
    u32,
    u16,
    st.lists(st.builds(AckRange, st.integers(1, 0xFFFF), st.integers(1, 0xFFFF)), max_size=8).map(
        tuple
    ),
)
frames = st.one_of(
    data_frames(),
    ack_frames,
    st.builds(PingFrame, u32),
    st.builds(PongFrame, u32),
    st.builds(CloseFrame, st.integers(0, 255)),
)


@given(st.lists(frames, min_size=1, max_size=6))
def test_any_frames_round_trip(frame_list: list[Frame]) -> None:
    wire = encode_datagram(frame_list)
    assert len(wire) == 1 + sum(frame_size(f) for f in frame_list)
    assert decode_datagram(wire) == frame_list


@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_only_raises_malformed(data: bytes) -> None:
    try:
        decoded = decode_datagram(data)
    except MalformedPacket as err:
        assert err.reason
    else:
        assert decoded
        assert encode_datagram(decoded) == data


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_truncated_datagrams_are_refused(frame_list: list[Frame], data: st.DataObject) -> None:
    wire = encode_datagram(frame_list)
    boundaries = {1 + sum(frame_size(f) for f in frame_list[:i]): i for i in range(len(frame_list))}
    cut = data.draw(st.integers(0, len(wire) - 1))
    if cut > 1 and cut in boundaries:  # a shorter but valid datagram
        assert decode_datagram(wire[:cut]) == frame_list[: boundaries[cut]]
    else:
        with pytest.raises(MalformedPacket):
            decode_datagram(wire[:cut])


# -- malformed cases ----------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"", "empty"),
        (b"\x00\x04\x00\x00\x00\x01", "bad_magic"),
        (b"\xd2\x04\x00\x00\x00\x01", "bad_magic"),
        (bytes([MAGIC]), "no_frames"),
        (bytes([MAGIC, 0x07]), "unknown_frame"),
        (bytes([MAGIC, 0x00]), "unknown_frame"),
        (bytes([MAGIC, 0x04, 0, 0]), "truncated"),
        (bytes.fromhex("d1 01 00000000 0000 0001 0005 6869"), "truncated"),
        (bytes.fromhex("d1 01 00000000 0000 0000 0000"), "bad_fragment"),
        (bytes.fromhex("d1 02 00000000 0003 0003 0000"), "bad_fragment"),
        (bytes.fromhex("d1 03 00000001 0000 02 0001 0001"), "truncated"),
        (bytes.fromhex("d1 03 00000001 0000 01 0000 0001"), "bad_ack_range"),
        (bytes.fromhex("d1 03 00000001 0000 01 0001 0000"), "bad_ack_range"),
        (bytes.fromhex("d1 04 0000002a 09"), "unknown_frame"),
        (bytes([MAGIC, 0x06]), "truncated"),
    ],
)
def test_malformed_datagrams_name_their_reason(wire: bytes, reason: str) -> None:
    with pytest.raises(MalformedPacket) as info:
        decode_datagram(wire)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "frame",
    [
        DataFrame(True, 0, 0, 0, b""),
        DataFrame(True, 0, 2, 2, b""),
        DataFrame(True, 0, 0, 1, bytes(0x10000)),
        AckFrame(0, 0x10000, ()),
        AckFrame(0, 0, (AckRange(0, 1),)),
        AckFrame(0, 0, tuple(AckRange(1, 1) for _ in range(256))),
        PingFrame(1 << 32),
        CloseFrame(256),
    ],
)
def test_unencodable_frames_raise_local_error(frame: Frame) -> None:
    with pytest.raises(FrameEncodeError):
        encode_datagram([frame])


def test_builder_never_exceeds_its_size() -> None:
    builder = DatagramBuilder(40)
    assert builder.add(DataFrame(True, 0, 0, 1, bytes(20)))
    assert not builder.add(DataFrame(True, 1, 0, 1, bytes(20)))
    assert builder.add(PingFrame(1))
    datagram = builder.finish()
    assert len(datagram) <= 40
    assert builder.frame_count == 2
    assert decode_datagram(datagram)[1] == PingFrame(1)


@pytest.mark.parametrize(
    ("wire", "reference", "expected"),
    [
        (5, 0, 5),
        (5, 1 << 32, (1 << 32) + 5),
        (0xFFFFFFFF, 1 << 32, (1 << 32) - 1),
        (3, (1 << 32) - 2, (1 << 32) + 3),
        (0xFFFFFFFF, 0, -1),
        (0x7FFFFFFF, 0, 0x7FFFFFFF),
        (0x80000000, 0, 0x80000000),  # a tie resolves upward
    ],
)
def test_expand_seq_picks_the_nearest_value(wire: int, reference: int, expected: int) -> None:
    assert expand_seq(wire, reference) == expected


@given(st.integers(0, 1 << 40), st.integers(-(1 << 31) + 1, (1 << 31) - 1))
def test_expand_seq_inverts_truncation_within_half_range(reference: int, offset: int) -> None:
    value = reference + offset
    assert expand_seq(value & 0xFFFFFFFF, reference) == value
