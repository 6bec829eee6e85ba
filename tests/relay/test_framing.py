"""Channel-data frames and the relay's wire messages: round trips and malformed input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.connection import channel_data_frame
from hopline.relay import (
    CHANNEL_MAX,
    CHANNEL_MIN,
    FrameError,
    channel_frame,
    is_channel_frame,
    parse_channel_frame,
)
from hopline.testing.wire_strategies import records
from hopline.wire import Address, WireError, decode, encode, read_header
from hopline.wire.relay import RELAY_COMMANDS, RelayData, RelaySend

channels = st.integers(min_value=CHANNEL_MIN, max_value=CHANNEL_MAX)


@given(channels, st.binary(max_size=1500))
def test_channel_frames_round_trip(channel: int, payload: bytes) -> None:
    frame = channel_frame(channel, payload)
    assert len(frame) == len(payload) + 2
    assert is_channel_frame(frame)
    assert parse_channel_frame(frame) == (channel, payload)
    # the connection layer's fallbacks build the same bytes
    assert channel_data_frame(channel, payload) == frame


@given(st.binary(max_size=64))
def test_parsing_any_bytes_gives_a_frame_or_a_frame_error(data: bytes) -> None:
    try:
        channel, payload = parse_channel_frame(data)
    except FrameError as exc:
        assert exc.reason in {"channel:truncated", "channel:out-of-range"}
        assert not is_channel_frame(data) or len(data) < 2
    else:
        assert CHANNEL_MIN <= channel <= CHANNEL_MAX and data[2:] == payload


@given(st.sampled_from([RelaySend, RelayData]).flatmap(records))
def test_relay_messages_never_look_like_channel_frames(message: RelaySend | RelayData) -> None:
    data = encode(message)
    assert not is_channel_frame(data)
    assert read_header(data).command in RELAY_COMMANDS
    assert decode(data) == message


@given(st.binary(max_size=80))
def test_decoding_garbage_as_a_relay_message_raises_only_wire_errors(data: bytes) -> None:
    try:
        message = decode(b"\x13\x5c\x00" + data)  # a relay.send notice header, then anything
    except WireError as exc:  # the only family decode may raise, always with a reason
        assert exc.reason
        return
    assert isinstance(message, RelaySend)


def test_bad_channels_cannot_be_framed() -> None:
    with pytest.raises(ValueError):
        channel_frame(0x3FFF, b"x")
    with pytest.raises(ValueError):
        channel_frame(0x8000, b"x")
    data = encode(RelaySend(relay_id=1, peer=Address.parse("203.0.113.1:9"), data=b"hi"))
    assert data[0] == 0x13  # version 1, notice
