"""docs/protocol.md's media vectors decode to what the spec says, and encode back."""

from __future__ import annotations

import re
from pathlib import Path

from hopline.media.packet import MediaFrame, MediaPacket, decode_packet, encode_packet
from hopline.media.report import ReceiverReport, decode_report, encode_report

SPEC = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()


def vector(name: str) -> bytes:
    found = re.search(rf"#### media vector: {name}\n.*?```hex\n(.*?)\n```", SPEC, flags=re.S)
    assert found is not None, f"no vector {name} in docs/protocol.md"
    return bytes.fromhex(found.group(1))


def test_media_packet_vector() -> None:
    data = vector("media-packet")
    packet = decode_packet(data)
    assert packet == MediaPacket(
        version=1,
        flags=0x02,
        seq=258,
        timestamp=196608,
        primary=b"Hell",
        redundant=(MediaFrame(seq=257, timestamp=196608 - 960, payload=b"\x0b\x0c"),),
    )
    assert packet.fec and encode_packet(packet) == data


def test_receiver_report_vector() -> None:
    data = vector("receiver-report")
    report = decode_report(data)
    assert report == ReceiverReport(
        highest_seq=66051,
        cumulative_lost=5,
        fraction_lost=13,
        jitter_us=2500,
        jb_delay_ms=60,
        mean_burst_x10=15,
        sent_at_ms=1_000_000,
        echo_ms=999_000,
        echo_delay_ms=20,
        flags=1,
    )
    assert encode_report(report) == data
