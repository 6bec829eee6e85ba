"""The libopus binding against the real library: round trips, settings, concealment, FEC.

Signals are made here (a sine, a chirp, and a speech-like sum of harmonics
with a gliding pitch and a syllable envelope) so the tests need nothing but
libopus. Decoded audio is compared with the source after removing the codec
delay, which is measured by cross-correlation near the encoder's lookahead.
"""

from __future__ import annotations

import ctypes.util
import math
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from hopline.media import opus
from hopline.media.opus import (
    OpusDecoder,
    OpusEncoder,
    OpusError,
    VoiceDecoder,
    VoiceEncoder,
    opus_available,
)

_REASON = opus_available()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=f"libopus unavailable: {_REASON}")

RATE = 48000
FRAME = 960
Signal = npt.NDArray[np.int16]


# ---------------------------------------------------------------- signals


def sine(freq: float = 1000.0, seconds: float = 1.0, amplitude: float = 8000.0) -> Signal:
    """A pure tone."""
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def chirp(seconds: float = 1.0, low: float = 200.0, high: float = 4000.0) -> Signal:
    """A linear sweep from ``low`` to ``high`` Hz."""
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * (low * t + (high - low) / (2 * seconds) * t * t)
    return (8000 * np.sin(phase)).astype(np.int16)


def speech_like(seconds: float = 2.0) -> Signal:
    """Voiced-speech stand-in: harmonics of a gliding pitch, three formants, syllables."""
    t = np.arange(int(RATE * seconds)) / RATE
    f0 = 150 + 40 * np.sin(2 * np.pi * 0.7 * t) + 10 * np.sin(2 * np.pi * 5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    x = np.zeros_like(t)
    for k in range(1, 30):
        fk = k * f0
        formants = (
            np.exp(-(((fk - 700) / 300) ** 2))
            + 0.6 * np.exp(-(((fk - 1800) / 400) ** 2))
            + 0.3 * np.exp(-(((fk - 2800) / 500) ** 2))
            + 0.05
        )
        x += formants * np.sin(k * phase) / np.sqrt(k)
    envelope = np.sqrt(np.clip(1.2 * np.sin(2 * np.pi * 3 * t), 0, 1))
    x *= envelope
    scaled: Signal = (x / np.max(np.abs(x)) * 12000).astype(np.int16)
    return scaled


def frames(signal: Signal) -> list[Signal]:
    """The signal cut into 20 ms frames (a partial tail is dropped)."""
    return [signal[i * FRAME : (i + 1) * FRAME] for i in range(len(signal) // FRAME)]


def encode_all(encoder: OpusEncoder, signal: Signal) -> list[bytes]:
    """Encode every frame."""
    return [encoder.encode(f) for f in frames(signal)]


def measure_delay(source: Signal, decoded: Signal, hint: int, span: int = 20) -> int:
    """The lag in ``[hint - span, hint + span]`` where ``decoded`` best matches ``source``."""
    a = source[RATE // 5 : -RATE // 5].astype(float)
    start = RATE // 5

    def score(lag: int) -> float:
        b = decoded[start + lag : start + lag + len(a)].astype(float)
        return float(np.dot(a, b))

    return max(range(hint - span, hint + span + 1), key=score)


def snr_db(reference: npt.NDArray[np.float64], test: npt.NDArray[np.float64]) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference``."""
    noise = float(np.sum((reference - test) ** 2))
    return 10 * math.log10(float(np.sum(reference**2)) / max(noise, 1e-9))


def aligned(source: Signal, decoded: Signal, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """The middle of the source and the decoded samples that match it."""
    a = source[RATE // 5 : -RATE // 5].astype(float)
    b = decoded[RATE // 5 + delay : RATE // 5 + delay + len(a)].astype(float)
    return a, b


def original_frame(signal: Signal, index: int, delay: int) -> npt.NDArray[np.float64]:
    """The source samples that decoded frame ``index`` reproduces."""
    start = index * FRAME - delay
    return signal[start : start + FRAME].astype(float)


# ---------------------------------------------------------------- availability


def test_library_loaded_and_interfaces_met() -> None:
    assert opus_available() is None
    assert opus.opus_version().startswith("libopus")
    with OpusEncoder() as encoder, OpusDecoder() as decoder:
        assert isinstance(encoder, VoiceEncoder)
        assert isinstance(decoder, VoiceDecoder)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("name", "signal", "min_snr"),
    [("sine 1 kHz", sine(), 20.0), ("chirp 200 Hz-4 kHz", chirp(), 12.0)],
)
def test_round_trip_keeps_signal(name: str, signal: Signal, min_snr: float) -> None:
    encoder, decoder = OpusEncoder(bitrate=24000), OpusDecoder()
    packets = encode_all(encoder, signal)
    decoded = np.concatenate([decoder.decode(p) for p in packets])
    assert decoded.dtype == np.int16 and decoded.shape == (len(packets) * FRAME,)
    assert decoder.last_packet_duration == FRAME
    assert encoder.lookahead == 312
    delay = measure_delay(signal, decoded, hint=encoder.lookahead)
    assert abs(delay - encoder.lookahead) <= 8, f"{name}: codec delay {delay}"
    a, b = aligned(signal, decoded, delay)
    assert np.corrcoef(a, b)[0, 1] > 0.97, name
    assert snr_db(a, b) > min_snr, name
    # Misaligned by half a millisecond, the same comparison fails: the check can fail.
    a, b = aligned(signal, decoded, delay + 24)
    assert snr_db(a, b) < min_snr


def test_stereo_round_trip() -> None:
    left, right = sine(440.0), chirp()
    signal = np.stack([left, right], axis=1)
    encoder, decoder = OpusEncoder(channels=2, bitrate=64000), OpusDecoder(channels=2)
    out = [decoder.decode(encoder.encode(signal[i : i + FRAME])) for i in range(0, RATE, FRAME)]
    decoded = np.concatenate(out)
    assert decoded.shape == (RATE, 2)
    delay = measure_delay(right, np.ascontiguousarray(decoded[:, 1]), hint=encoder.lookahead)
    a, b = aligned(right, np.ascontiguousarray(decoded[:, 1]), delay)
    assert np.corrcoef(a, b)[0, 1] > 0.9


# ---------------------------------------------------------------- settings


def test_setters_take_effect() -> None:
    encoder = OpusEncoder(bitrate=16000, fec=False, packet_loss_perc=0, complexity=0, dtx=False)
    assert (encoder.bitrate, encoder.fec, encoder.packet_loss_perc) == (16000, False, 0)
    assert (encoder.complexity, encoder.dtx) == (0, False)
    encoder.set_bitrate(48000)
    encoder.set_fec(True)
    encoder.set_packet_loss_perc(25)
    encoder.set_complexity(10)
    encoder.set_dtx(True)
    assert (encoder.bitrate, encoder.fec, encoder.packet_loss_perc) == (48000, True, 25)
    assert (encoder.complexity, encoder.dtx) == (10, True)


def test_signal_hint_keeps_speech_out_of_celt_at_64k() -> None:
    encoder = OpusEncoder(bitrate=64000, complexity=10)
    assert encoder.signal == "auto"
    told = OpusEncoder(bitrate=64000, complexity=10, signal="voice")
    assert told.signal == "voice"

    def configs(packets: list[bytes]) -> set[int]:
        return {packet[0] >> 3 for packet in packets[5:]}  # TOC: 0-11 SILK, 12-15 hybrid, 16+ CELT

    signal = speech_like()
    assert max(configs(encode_all(told, signal))) < 16
    assert max(configs(encode_all(encoder, signal))) >= 16  # unhinted, it switches to CELT
    with pytest.raises(ValueError, match="signal"):
        told.set_signal("speech")


def test_vbr_modes() -> None:
    encoder = OpusEncoder(bitrate=32000)
    assert encoder.vbr == "constrained"
    signal = speech_like()
    for mode in ("cbr", "unconstrained", "constrained"):
        encoder.set_vbr(mode)
        assert encoder.vbr == mode
    cbr = encode_all(OpusEncoder(bitrate=32000, vbr="cbr"), signal)
    assert {len(p) for p in cbr[2:]} == {80}  # 20 ms at 32 kbit/s
    vbr = encode_all(OpusEncoder(bitrate=32000, vbr="unconstrained"), signal)
    assert len({len(p) for p in vbr[2:]}) > 1
    with pytest.raises(ValueError, match="vbr"):
        encoder.set_vbr("average")


def test_max_bandwidth_limits_the_coded_band() -> None:
    def configs(packets: list[bytes]) -> set[int]:
        return {packet[0] >> 3 for packet in packets[5:]}  # TOC configuration numbers

    signal = speech_like()
    full = OpusEncoder(bitrate=64000, signal="voice")
    assert full.max_bandwidth == "full"
    assert max(configs(encode_all(full, signal))) in (14, 15)  # hybrid, full band
    wide = OpusEncoder(bitrate=64000, signal="voice", max_bandwidth="wide")
    assert wide.max_bandwidth == "wide"
    assert configs(encode_all(wide, signal)) <= set(range(8, 12))  # SILK wideband only
    with pytest.raises(ValueError, match="max_bandwidth"):
        wide.set_max_bandwidth("ultra")


def test_bitrate_changes_packet_sizes() -> None:
    signal = chirp()
    low = encode_all(OpusEncoder(bitrate=12000), signal)
    high = encode_all(OpusEncoder(bitrate=64000), signal)
    encoder = OpusEncoder(bitrate=12000)
    switched = encode_all(encoder, signal[: RATE // 2])
    encoder.set_bitrate(64000)
    switched += encode_all(encoder, signal[RATE // 2 :])

    def mean_size(packets: list[bytes]) -> float:
        return float(np.mean([len(p) for p in packets]))

    assert mean_size(high) > 3 * mean_size(low)
    half = len(switched) // 2
    assert mean_size(switched[half + 2 :]) > 3 * mean_size(switched[2:half])
    # 20 ms at 12 kbit/s is 30 bytes; allow VBR some room either way.
    assert 15 <= mean_size(low) <= 45


def test_dtx_sends_tiny_packets_in_silence() -> None:
    silence = np.zeros(RATE, dtype=np.int16)
    with_dtx = encode_all(OpusEncoder(dtx=True), silence)
    without = encode_all(OpusEncoder(dtx=False), silence)
    assert sum(len(p) <= 2 for p in with_dtx[10:]) > 20
    assert sum(len(p) <= 2 for p in without[10:]) == 0


def test_reset_keeps_settings() -> None:
    encoder, decoder = OpusEncoder(bitrate=32000), OpusDecoder()
    decoder.decode(encoder.encode(sine()[:FRAME]))
    encoder.reset()
    decoder.reset()
    assert encoder.bitrate == 32000
    assert decoder.decode(encoder.encode(sine()[:FRAME])).shape == (FRAME,)


# ---------------------------------------------------------------- loss


def test_conceal_continues_voiced_signal() -> None:
    signal = sine(seconds=0.5)
    encoder, decoder = OpusEncoder(), OpusDecoder()
    last = np.zeros(FRAME, dtype=np.int16)
    for packet in encode_all(encoder, signal):
        last = decoder.decode(packet)
    concealed = decoder.conceal()
    assert concealed.shape == (FRAME,) and concealed.dtype == np.int16
    rms = np.sqrt(np.mean(concealed.astype(float) ** 2))
    assert rms > 0.1 * np.sqrt(np.mean(last.astype(float) ** 2))
    peak_hz = np.argmax(np.abs(np.fft.rfft(concealed))) * RATE / FRAME
    assert abs(peak_hz - 1000) <= 100
    assert decoder.conceal(480).shape == (480,)


def _decode_all(packets: list[bytes]) -> list[Signal]:
    """Decode every packet with one decoder."""
    decoder = OpusDecoder()
    return [decoder.decode(p) for p in packets]


def _decode_with_losses(packets: list[bytes], lost: set[int], *, fec: bool) -> list[Signal]:
    """Decode ``packets`` losing ``lost``; recover them from FEC or conceal them."""
    decoder = OpusDecoder()
    out = []
    for index, packet in enumerate(packets):
        if index not in lost:
            out.append(decoder.decode(packet))
        elif fec:
            out.append(decoder.decode_fec(packets[index + 1]))
        else:
            out.append(decoder.conceal())
    return out


def test_fec_recovers_lost_frames_better_than_concealment() -> None:
    signal = speech_like()
    encoder = OpusEncoder(bitrate=24000, fec=True, packet_loss_perc=20)
    packets = encode_all(encoder, signal)
    lost = set(range(12, len(packets) - 1, 5))
    recovered = _decode_with_losses(packets, lost, fec=True)
    concealed = _decode_with_losses(packets, lost, fec=False)
    clean = np.concatenate(_decode_all(packets))
    delay = measure_delay(signal, clean, hint=encoder.lookahead)  # 310 here, lookahead 312
    ref = np.concatenate([original_frame(signal, i, delay) for i in sorted(lost)])
    fec_out = np.concatenate([recovered[i] for i in sorted(lost)]).astype(float)
    plc_out = np.concatenate([concealed[i] for i in sorted(lost)]).astype(float)
    fec_snr, plc_snr = snr_db(ref, fec_out), snr_db(ref, plc_out)
    assert fec_snr > plc_snr + 6, (fec_snr, plc_snr)
    assert fec_snr > 6


def test_without_fec_data_decode_fec_only_conceals() -> None:
    signal = speech_like(seconds=1.0)
    packets = encode_all(OpusEncoder(bitrate=24000, fec=False, packet_loss_perc=20), signal)
    lost = {15, 30}
    recovered = _decode_with_losses(packets, lost, fec=True)
    concealed = _decode_with_losses(packets, lost, fec=False)
    for index in lost:
        assert np.array_equal(recovered[index], concealed[index])


def test_fec_costs_bits_only_with_expected_loss() -> None:
    signal = speech_like(seconds=1.0)

    def packets(fec: bool, loss: int) -> list[bytes]:
        encoder = OpusEncoder(bitrate=24000, fec=fec, packet_loss_perc=loss)
        return encode_all(encoder, signal)

    assert packets(fec=True, loss=0) == packets(fec=False, loss=0)
    # With loss expected, FEC carries a second, coarser copy of each frame.
    assert packets(fec=True, loss=20) != packets(fec=False, loss=20)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "packet",
    [
        b"\x03",  # code 3 without its frame-count byte
        b"\x03\x00",  # code 3 with zero frames
        b"\x01\x00\x00\x00",  # code 1 (two equal frames) with an odd payload
        b"\x02\xff",  # code 2 whose first frame length runs past the end
    ],
)
def test_malformed_packet_raises_opus_error(packet: bytes) -> None:
    decoder = OpusDecoder()
    with pytest.raises(OpusError) as caught:
        decoder.decode(packet)
    assert caught.value.code == opus.OPUS_INVALID_PACKET
    assert "corrupted" in str(caught.value)
    with pytest.raises(OpusError):
        decoder.decode_fec(packet)
    # The decoder is still usable afterwards.
    assert decoder.decode(OpusEncoder().encode(sine()[:FRAME])).shape == (FRAME,)


def test_empty_packet_is_an_error_not_a_gap() -> None:
    with pytest.raises(OpusError):
        OpusDecoder().decode(b"")


def test_random_bytes_never_crash() -> None:
    rng = np.random.default_rng(7)
    decoder = OpusDecoder()
    decoded = rejected = 0
    for _ in range(2000):
        packet = rng.bytes(int(rng.integers(1, 400)))
        try:
            out = decoder.decode(packet)
        except OpusError as exc:
            assert exc.code < 0
            rejected += 1
        else:
            assert out.dtype == np.int16 and 0 < len(out) <= RATE * 120 // 1000
            decoded += 1
    assert decoded > 0 and rejected > 0


@pytest.mark.parametrize(
    ("pcm", "match"),
    [
        (np.zeros(FRAME, dtype=np.float32), "dtype int16"),
        (np.zeros(FRAME - 1, dtype=np.int16), "one Opus frame"),
        (np.zeros((FRAME, 2), dtype=np.int16), "shape"),
        ([0] * FRAME, "numpy int16 array"),
    ],
)
def test_encoder_rejects_bad_pcm(pcm: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        OpusEncoder().encode(pcm)  # type: ignore[arg-type]


def test_bad_settings_and_arguments() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        OpusEncoder(sample_rate=44100)
    with pytest.raises(ValueError, match="channels"):
        OpusDecoder(channels=3)
    with pytest.raises(ValueError, match="application"):
        OpusEncoder(application="music")
    encoder = OpusEncoder()
    with pytest.raises(ValueError, match="complexity"):
        encoder.set_complexity(11)
    with pytest.raises(ValueError, match="packet_loss_perc"):
        encoder.set_packet_loss_perc(-1)
    with pytest.raises(ValueError, match="bitrate"):
        encoder.set_bitrate(100)
    with pytest.raises(ValueError, match="multiple"):
        OpusDecoder().conceal(961)
    with pytest.raises(ValueError, match="bytes"):
        OpusDecoder().decode("not bytes")  # type: ignore[arg-type]


def test_every_opus_frame_length_encodes() -> None:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    for samples in (120, 240, 480, 960, 1920, 2880):
        out = decoder.decode(encoder.encode(np.zeros(samples, dtype=np.int16)))
        assert out.shape == (samples,)


def test_close_is_idempotent_and_final() -> None:
    encoder, decoder = OpusEncoder(), OpusDecoder()
    packet = encoder.encode(sine()[:FRAME])
    encoder.close()
    encoder.close()
    decoder.close()
    decoder.close()
    with pytest.raises(ValueError, match="closed"):
        encoder.encode(sine()[:FRAME])
    with pytest.raises(ValueError, match="closed"):
        decoder.decode(packet)
    with pytest.raises(ValueError, match="closed"):
        _ = encoder.bitrate


def test_error_carries_code_and_libopus_text() -> None:
    error = OpusError(opus.OPUS_BAD_ARG, "context")
    assert error.code == -1
    assert error.message == "invalid argument"
    assert str(error) == "context: invalid argument (libopus error -1)"


def test_ctl_with_unknown_request_is_typed_error() -> None:
    encoder = OpusEncoder()
    with pytest.raises(OpusError) as caught:
        encoder._set(3999, 0)  # not a request libopus knows
    assert caught.value.code == opus.OPUS_UNIMPLEMENTED
    assert encoder.bitrate == 24000


# ---------------------------------------------------------------- loading


def test_falls_back_to_libopus_inside_pyav_wheel(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    opus.opus_version()  # loaded, so the process maps the library's real file
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps to find the loaded libopus file")
    mapped = {line.split()[-1] for line in maps.read_text().splitlines() if "libopus" in line}
    assert mapped, "libopus is loaded but not in /proc/self/maps"
    real = Path(sorted(mapped)[0])
    # The layout of a manylinux wheel: site-packages/av/__init__.py, site-packages/av.libs/.
    (tmp_path / "av").mkdir()
    (tmp_path / "av" / "__init__.py").write_text("")
    (tmp_path / "av.libs").mkdir()
    bundled = tmp_path / "av.libs" / "libopus-1a2b3c4d.so.0.8.0"
    bundled.symlink_to(real)
    monkeypatch.delenv(opus.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(opus, "_pyav_origin", lambda: str(tmp_path / "av" / "__init__.py"))
    loaded = opus._load.__wrapped__()
    assert not isinstance(loaded, str), loaded
    assert loaded.path == str(bundled)


def test_missing_library_is_a_reason_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(opus.LIBRARY_ENV, raising=False)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(opus, "_pyav_origin", lambda: None)
    reason = opus._load.__wrapped__()
    assert isinstance(reason, str) and "libopus0" in reason


def _release_at(path: str) -> tuple[int, ...]:
    dll = ctypes.CDLL(path)
    opus._declare(dll)
    return opus._release(opus._version_of(dll))


def test_newest_library_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(opus.LIBRARY_ENV, raising=False)
    candidates = opus._candidate_paths()
    versions = {}
    for path in candidates:
        try:
            versions[path] = _release_at(path)
        except OSError:
            continue
    if len(set(versions.values())) < 2:
        pytest.skip(f"needs two libopus releases to choose from, found {versions}")
    loaded = opus._load.__wrapped__()
    assert not isinstance(loaded, str), loaded
    assert versions[loaded.path] == max(versions.values())
    # Reversing the search order does not change the choice.
    monkeypatch.setattr(opus, "_candidate_paths", lambda: list(reversed(candidates)))
    again = opus._load.__wrapped__()
    assert not isinstance(again, str) and again.path == loaded.path


def test_environment_names_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    candidates = opus._candidate_paths()
    if not candidates:
        pytest.skip("no libopus found to name")
    oldest = min(candidates, key=_release_at)
    monkeypatch.setenv(opus.LIBRARY_ENV, oldest)
    loaded = opus._load.__wrapped__()
    assert not isinstance(loaded, str) and loaded.path == oldest
    monkeypatch.setenv(opus.LIBRARY_ENV, "/nonexistent/libopus.so.0")
    reason = opus._load.__wrapped__()
    assert isinstance(reason, str) and "/nonexistent/libopus.so.0" in reason


@pytest.mark.parametrize(
    ("text", "release"),
    [("libopus 1.3.1", (1, 3, 1)), ("libopus 1.6.1-fixed", (1, 6, 1)), ("libopus", ())],
)
def test_release_is_read_from_the_version_string(text: str, release: tuple[int, ...]) -> None:
    assert opus._release(text) == release
