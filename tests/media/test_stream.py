"""VoiceStream: real Opus through the sans-I/O engine, packet by packet."""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
import pytest

from hopline.media.jitterbuffer import JitterBuffer
from hopline.media.opus import OpusEncoder, opus_available
from hopline.media.packet import Packetizer, decode_packet, is_media_packet
from hopline.media.ratecontrol import MediaSettings
from hopline.media.report import ReceiverReport, decode_report, encode_report, is_report
from hopline.media.stream import CODEC, VoiceConfig, VoiceStream

if opus_available() is not None:
    pytest.skip(f"libopus: {opus_available()}", allow_module_level=True)

Pcm = npt.NDArray[np.int16]
FRAME = 960
SLOT = 0.02


def tone(k: int, freq: float = 440.0) -> Pcm:
    """Frame ``k`` of a continuous sine tone."""
    t = (np.arange(FRAME) + k * FRAME) / 48000
    return (8000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def fixed(settings: MediaSettings) -> VoiceConfig:
    return VoiceConfig(adaptive=False, fixed=settings, first_seq=1000)


def media(stream: VoiceStream) -> list[bytes]:
    return [d for d in stream.datagrams_to_send() if is_media_packet(d)]


def run(
    a: VoiceStream, b: VoiceStream, slots: int, lose: set[int] | None = None, start: int = 0
) -> list[Pcm]:
    """A sends ``slots`` tone frames straight to B (dropping packet indexes in ``lose``)."""
    out = []
    for k in range(start, start + slots):
        now = k * SLOT
        a.send_audio(tone(k), now)
        for data in media(a):
            if k not in (lose or set()):
                b.receive_datagram(data, now)
        out.append(b.playout(now))
    return out


def test_send_audio_makes_one_media_packet_per_frame() -> None:
    a = VoiceStream(VoiceConfig(first_seq=7))
    a.send_audio(tone(0), 0.0)
    a.send_audio(tone(1), 0.02)
    first, second = (decode_packet(d) for d in a.datagrams_to_send())
    assert (first.seq, second.seq) == (7, 8)
    assert second.timestamp - first.timestamp == FRAME
    assert first.marker and not second.marker
    assert a.datagrams_to_send() == []
    st = a.stats(0.02)
    assert st.packets_sent == 2 and st.bytes_sent > 0
    assert st.codec == CODEC == "opus/48000/1"


def test_playout_is_silence_before_media_then_the_tone() -> None:
    a, b = VoiceStream(fixed(MediaSettings(32_000, False, 0, 0))), VoiceStream()
    assert not b.playout(0.0).any()
    out = run(a, b, 50)
    assert all(frame.shape == (FRAME,) and frame.dtype == np.int16 for frame in out)
    assert not out[0].any()  # still buffering
    assert np.abs(out[-1]).max() > 3000  # the tone plays
    st = b.stats(1.0)
    assert st.packets_received == 50 and st.concealed == 0 and st.residual_loss == 0.0


def test_lost_frame_comes_back_from_redundancy() -> None:
    a = VoiceStream(fixed(MediaSettings(32_000, False, 0, 2)))
    b = VoiceStream()
    run(a, b, 60, lose={30})
    st = b.stats(1.2)
    assert st.recovered_redundancy == 1
    assert st.recovered_fec == 0 and st.residual_loss == 0.0
    assert st.loss_receive == pytest.approx(1 / 60)


def test_lost_frame_comes_back_from_opus_fec() -> None:
    a = VoiceStream(fixed(MediaSettings(32_000, True, 20, 0)))
    b = VoiceStream()
    run(a, b, 60, lose={30})
    st = b.stats(1.2)
    assert st.recovered_fec == 1 and st.recovered_redundancy == 0
    assert st.recovered == 1


def test_lost_frame_without_protection_is_concealed() -> None:
    a = VoiceStream(fixed(MediaSettings(32_000, False, 0, 0)))
    b = VoiceStream()
    run(a, b, 60, lose={30, 31})
    st = b.stats(1.2)
    assert st.concealed >= 1
    assert st.residual_loss > 0
    assert st.mos_estimate < VoiceStream().stats(0.0).mos_estimate


def test_malformed_and_unknown_datagrams_are_dropped_and_counted() -> None:
    b = VoiceStream()
    for data in (
        b"",
        b"\x81\x00",
        b"\x10hello world",
        b"\xa1short",
        b"\x81" + bytes(7),
        b"\xa2" * 31,
    ):
        b.receive_datagram(data, 0.0)
    assert b.dropped == {
        "media:truncated": 2,
        "media:not-media": 1,
        "report:length": 1,
        "media:empty-frame": 1,
        "report:version": 1,
    }
    assert not b.playout(0.0).any()


def test_duplicate_and_late_packets_are_counted() -> None:
    a, b = VoiceStream(fixed(MediaSettings(32_000, False, 0, 0))), VoiceStream()
    packets = []
    for k in range(20):
        a.send_audio(tone(k), k * SLOT)
        packets += media(a)
    for k, data in enumerate(packets[:10]):
        b.receive_datagram(data, k * SLOT)
        b.receive_datagram(data, k * SLOT)  # replayed
        b.playout(k * SLOT)
    for k in range(10, 20):
        if k != 12:
            b.receive_datagram(packets[k], k * SLOT)
        b.playout(k * SLOT)
    b.receive_datagram(packets[12], 0.5)  # long after its slot
    assert b.dropped["duplicate"] == 10
    assert b.dropped["late"] == 1
    assert b.stats(0.5).late == 1


def test_reports_are_due_every_interval_and_give_rtt() -> None:
    a, b = VoiceStream(VoiceConfig(report_interval_s=1.0)), VoiceStream()
    assert a.get_timer() is None
    a.handle_timer(0.0)
    assert a.get_timer() == pytest.approx(1.0)
    a.handle_timer(0.5)
    assert a.datagrams_to_send() == []
    a.handle_timer(1.0)
    (data,) = a.datagrams_to_send()
    assert is_report(data)
    assert decode_report(data).sent_at_ms == 1000
    assert not decode_report(data).has_echo
    # A's report reaches B 40 ms later; B answers 300 ms after that; 40 ms back.
    b.receive_datagram(data, 1.04)
    b.handle_timer(1.04)  # starts B's clock: its first report is due at 2.04
    b.handle_timer(2.04)
    (answer,) = b.datagrams_to_send()
    report = decode_report(answer)
    assert report.has_echo and report.echo_ms == 1000 and report.echo_delay_ms == 1000
    a.receive_datagram(answer, 2.08)
    assert a.stats(2.08).rtt_ms == pytest.approx(80.0)
    assert a.stats(2.08).reports_received == 1


def test_adaptive_sender_applies_the_peer_reports() -> None:
    encoder = OpusEncoder(bitrate=32_000, fec=False)
    a = VoiceStream(VoiceConfig(first_seq=1), encoder=encoder)
    for second in range(1, 5):
        report = ReceiverReport(100 * second, 10 * second, 26, 2000, 60, 11, second * 1000)
        a.receive_datagram(encode_report(report), float(second))
    assert a.settings.fec and a.settings.redundancy == 2
    assert encoder.fec and encoder.packet_loss_perc == a.settings.packet_loss_perc
    assert encoder.bitrate == a.settings.bitrate
    for k in range(3):
        a.send_audio(tone(k), 5 + k * SLOT)
    packets = [decode_packet(d) for d in media(a)]
    assert [len(p.redundant) for p in packets] == [0, 1, 2]
    assert all(p.fec for p in packets)
    assert a.stats(6.0).loss_send == pytest.approx(26 / 256)


def test_fixed_settings_ignore_reports() -> None:
    a = VoiceStream(fixed(MediaSettings(24_000, False, 0, 1)))
    a.receive_datagram(encode_report(ReceiverReport(10, 5, 128, 0, 0, 0, 1)), 1.0)
    assert a.settings == MediaSettings(24_000, False, 0, 1)


def test_hold_stops_media_but_not_reports_and_marks_the_restart() -> None:
    a = VoiceStream(VoiceConfig(first_seq=1))
    a.hold(True)
    assert a.held
    for k in range(60):
        a.send_audio(tone(k), k * SLOT)
        a.handle_timer(k * SLOT)
    out = a.datagrams_to_send()
    assert out and all(is_report(d) for d in out)
    a.hold(False)
    a.send_audio(tone(60), 1.2)
    a.send_audio(tone(61), 1.22)
    first, second = (decode_packet(d) for d in a.datagrams_to_send())
    assert first.marker and not second.marker


def test_mute_sends_silence() -> None:
    a, b = VoiceStream(fixed(MediaSettings(32_000, False, 0, 0))), VoiceStream()
    a.set_muted(True)
    assert a.muted
    out = run(a, b, 40)
    assert b.stats(0.8).packets_received == 40
    assert max(int(np.abs(f).max()) for f in out) < 200


def test_peer_redundancy_deepens_the_jitter_buffer_floor() -> None:
    a = VoiceStream(fixed(MediaSettings(32_000, False, 0, 4)))
    b = VoiceStream()
    run(a, b, 20)
    assert b._jb.min_delay_ms == pytest.approx(100.0)
    plain = VoiceStream()
    run(VoiceStream(fixed(MediaSettings(32_000, False, 0, 0))), plain, 20)
    assert plain._jb.min_delay_ms == pytest.approx(40.0)


def test_bad_pcm_is_refused() -> None:
    a = VoiceStream()
    with pytest.raises(ValueError):
        a.send_audio(np.zeros(480, dtype=np.int16), 0.0)
    with pytest.raises(ValueError):
        a.send_audio(np.zeros(FRAME, dtype=np.float32), 0.0)


def test_stats_serialise_to_json() -> None:
    a, b = VoiceStream(fixed(MediaSettings(32_000, False, 0, 0))), VoiceStream()
    run(a, b, 30, lose={10})
    doc = json.loads(json.dumps(b.stats(0.6).to_json()))
    for key in ("rtt_ms", "loss_send", "loss_receive", "jitter_ms", "bitrate", "jb_delay_ms"):
        assert key in doc
    assert doc["codec"] == "opus/48000/1"
    assert 1.0 <= doc["mos_estimate"] <= 4.5
    assert doc["packets_received"] == 29
    assert doc["loss"] == doc["loss_receive"] == pytest.approx(1 / 30, abs=1e-4)


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError):
        VoiceConfig(report_interval_s=0)
    with pytest.raises(ValueError):
        VoiceConfig(jitter_min_delay_ms=500, jitter_max_delay_ms=400)


def test_spread_redundancy_waits_for_the_oldest_copy() -> None:
    a = VoiceStream(fixed(MediaSettings(32_000, False, 0, 4, spread=True)))
    b = VoiceStream()
    # A burst of six lost packets: every frame still has a copy 8 back at most.
    run(a, b, 80, lose={40, 41, 42, 43, 44, 45})
    assert b._jb.min_delay_ms == pytest.approx(180.0)
    st = b.stats(1.6)
    assert st.recovered_redundancy == 6
    assert st.residual_loss == 0.0


def test_packetizer_spread_redundancy_repeats_1_2_4_8_back() -> None:
    packer = Packetizer(0, first_seq=65530)
    for i in range(10):
        packer.pack(bytes([i + 1]))
    packer.set_redundancy(4, spread=True)
    assert packer.spread and packer.offsets == (1, 2, 4, 8)
    packet = decode_packet(packer.pack(b"z"))
    assert packet.seq == 4  # 65530 + 10, wrapped
    assert [f.seq for f in packet.redundant] == [65532, 0, 2, 3]
    assert [f.payload for f in packet.redundant] == [b"\x03", b"\x07", b"\x09", b"\x0a"]
    packer.set_redundancy(2, spread=True)
    assert [f.seq for f in packer.build(b"y").redundant] == [3, 4]
    packer.set_redundancy(3)
    assert packer.offsets == (1, 2, 3) and not packer.spread


def test_packetizer_spread_redundancy_at_the_start_uses_what_exists() -> None:
    packer = Packetizer(4, first_seq=0)
    packer.set_redundancy(4, spread=True)
    packer.pack(b"a")
    packer.pack(b"b")
    packer.pack(b"c")
    assert [f.seq for f in packer.build(b"d").redundant] == [1, 2]


def test_jitter_buffer_floor_can_be_moved_within_bounds() -> None:
    jb = JitterBuffer(min_delay_ms=40, max_delay_ms=400)
    jb.set_min_delay(180)
    assert jb.min_delay_ms == 180
    for bad in (0, -5, 401):
        with pytest.raises(ValueError):
            jb.set_min_delay(bad)
