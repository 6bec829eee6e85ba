"""Receiver reports: table-driven encode/decode, RTT echo, reception bookkeeping, fuzz."""

from __future__ import annotations

from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.media.packet import MediaPacketError, is_media_packet
from hopline.media.report import (
    DUPLICATE_WINDOW,
    FIELDS,
    REPORT_SIZE,
    REPORT_TYPE,
    ReceiverReport,
    ReceptionStats,
    decode_report,
    encode_report,
    is_report,
    stamp_ms,
)

SAMPLE = ReceiverReport(
    highest_seq=70_000,
    cumulative_lost=12,
    fraction_lost=25,
    jitter_us=4_500,
    jb_delay_ms=60,
    mean_burst_x10=30,
    sent_at_ms=123_456,
    echo_ms=120_000,
    echo_delay_ms=250,
    flags=1,
)


def test_round_trip_and_layout() -> None:
    data = encode_report(SAMPLE)
    assert data[0] == REPORT_TYPE == 0xA1
    assert len(data) == REPORT_SIZE == 31
    assert data[1:5] == (70_000).to_bytes(4, "big")
    assert decode_report(data) == SAMPLE
    assert is_report(data) and not is_media_packet(data)
    assert SAMPLE.loss == pytest.approx(25 / 256)
    assert SAMPLE.mean_burst == 3.0
    assert SAMPLE.jitter_ms == 4.5


def test_rtt_from_echo() -> None:
    # We stamped 120 000 ms; the peer held it 250 ms; now our clock reads 120 400.
    assert SAMPLE.rtt_ms(120_400) == 150.0
    # Wrap-around of the 32-bit millisecond clock.
    wrapped = ReceiverReport(0, 0, 0, 0, 0, 0, 5, echo_ms=2**32 - 100, echo_delay_ms=20, flags=1)
    assert wrapped.rtt_ms(30) == 110.0
    no_echo = ReceiverReport(0, 0, 0, 0, 0, 0, 5)
    assert no_echo.rtt_ms(1000) is None


def test_stamp_ms_wraps() -> None:
    assert stamp_ms(1.2345) == 1234 or stamp_ms(1.2345) == 1235
    assert stamp_ms(2**32 / 1000 + 1.0) == 1000


@pytest.mark.parametrize(("name", "_code", "largest"), FIELDS)
def test_every_field_range_is_checked(name: str, _code: str, largest: int) -> None:
    values = {n: 0 for n, _, _ in FIELDS}
    values[name] = largest + 1
    with pytest.raises(MediaPacketError) as err:
        encode_report(ReceiverReport(**values))
    assert err.value.reason == f"report:{name}-range"


def test_decode_rejections() -> None:
    data = encode_report(SAMPLE)
    cases = {
        data[:-1]: "report:length",
        data + b"\x00": "report:length",
        b"": "report:length",
        b"\x81" + data[1:]: "report:not-report",
        b"\xa2" + data[1:]: "report:version",
        data[:-1] + b"\x02": "report:flags-range",
    }
    for bad, reason in cases.items():
        with pytest.raises(MediaPacketError) as err:
            decode_report(bad)
        assert err.value.reason == reason


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_decode_raises_only_media_packet_error(data: bytes) -> None:
    try:
        report = decode_report(data)
    except MediaPacketError as err:
        assert err.reason.startswith("report:")
    else:
        assert encode_report(report) == data


@settings(max_examples=200)
@given(st.binary(min_size=REPORT_SIZE - 1, max_size=REPORT_SIZE - 1))
def test_any_well_sized_body_with_clean_flags_decodes(body: bytes) -> None:
    data = bytes([REPORT_TYPE]) + body[:-1] + bytes([body[-1] & 1])
    assert encode_report(decode_report(data)) == data


def test_reception_stats_counts_loss_and_bursts() -> None:
    stats = ReceptionStats()
    received = [s for s in range(100) if s not in {10, 11, 12, 50}]
    for seq in received:
        stats.on_packet(seq)
    assert stats.expected == 100
    assert stats.cumulative_lost == 4
    fraction, burst_x10 = stats.interval()
    assert fraction == (4 << 8) // 100
    assert burst_x10 == 20  # bursts of 3 and 1
    for seq in range(100, 150):
        stats.on_packet(seq)
    assert stats.interval() == (0, 0)
    assert stats.loss == pytest.approx(4 / 150)


def test_reception_stats_extends_across_wrap_and_takes_reordering() -> None:
    stats = ReceptionStats()
    for seq in (65534, 65535, 1, 0, 2):
        ext = stats.on_packet(seq)
    assert ext == 65538
    assert stats.highest == 65538
    assert stats.cumulative_lost == 0
    assert stats.interval() == (0, 0)


def test_reception_stats_ignores_duplicates_and_replays() -> None:
    stats = ReceptionStats()
    for seq in range(2000):
        assert stats.on_packet(seq) == seq
    assert stats.on_packet(1999) is None
    assert stats.on_packet(1500) is None
    assert stats.on_packet(100) is None  # older than the window: a replay
    assert stats.received == 2000
    assert stats.cumulative_lost == 0


def test_the_table_names_every_report_field_in_order() -> None:
    assert [f.name for f in fields(ReceiverReport)] == [name for name, _, _ in FIELDS]


def test_a_jump_in_numbering_costs_bounded_work() -> None:
    stats = ReceptionStats()
    stats.on_packet(0)
    stats.on_packet(30_000)
    fraction, burst_x10 = stats.interval()
    assert fraction == 255  # 29 999 of 30 001 missing
    assert burst_x10 == 10 * 1023  # only the last 1024 numbers are scanned


def test_a_flood_within_one_interval_keeps_bounded_state_and_counts_bursts() -> None:
    """A sender flooding new sequence numbers between two reports cannot grow the
    receiver's memory: only the last duplicate window is kept for burst counting."""
    stats = ReceptionStats()
    for seq in range(0, 200_000, 2):  # every other number: 100,000 packets, one interval
        stats.on_packet(seq % 65536)
    assert len(stats._seen) <= 2 * DUPLICATE_WINDOW
    assert len(stats._recent) <= 2 * DUPLICATE_WINDOW
    fraction, mean_burst_x10 = stats.interval()
    assert 120 <= fraction <= 136  # half of them lost
    assert mean_burst_x10 == 10  # one at a time
