"""WAV reading and writing, frame sources and sinks, and sound-device errors.

WAV files of every supported layout are built byte by byte here (RIFF header,
``fmt `` chunk, ``data`` chunk) from known int16 values, so the reader is
checked against an independent writer; one more check reads files converted
by sox when it is installed. Device streams are opened for real: on a machine
without a sound card they must fail with :class:`AudioDeviceError`. The
device queue logic is driven through a stand-in ``sounddevice`` module.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from hopline.media import audio
from hopline.media.audio import (
    FRAME_SAMPLES,
    AudioDeviceError,
    AudioFileError,
    AudioSink,
    AudioSource,
    DeviceSink,
    DeviceSource,
    NullSink,
    SilenceSource,
    ToneSource,
    WavSink,
    WavSource,
    load_voice,
    open_call_audio,
    read_wav,
    write_wav,
)

Pcm = npt.NDArray[np.int16]
PCM_TAG = 1
FLOAT_TAG = 3
# KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT: the format tag, then a fixed GUID tail.
GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def sample_values(n: int = 4800, seed: int = 7) -> Pcm:
    """Known int16 values, including both extremes."""
    rng = np.random.default_rng(seed)
    values = rng.integers(-32768, 32768, size=n).astype(np.int16)
    values[:2] = (-32768, 32767)
    return values


def riff(fmt_body: bytes, data: bytes, *, extra: bytes = b"") -> bytes:
    """A RIFF/WAVE file with an optional chunk before ``data``."""
    fmt = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body
    body = b"WAVE" + fmt + extra + b"data" + struct.pack("<I", len(data)) + data
    if len(data) % 2:
        body += b"\x00"
    return b"RIFF" + struct.pack("<I", len(body)) + body


def fmt_chunk(tag: int, channels: int, rate: int, bits: int, *, extensible: bool = False) -> bytes:
    """A ``fmt `` chunk body, plain or WAVE_FORMAT_EXTENSIBLE."""
    align = channels * bits // 8
    outer = 0xFFFE if extensible else tag
    body = struct.pack("<HHIIHH", outer, channels, rate, rate * align, align, bits)
    if extensible:
        body += struct.pack("<HHI", 22, bits, 0) + struct.pack("<H", tag) + GUID_TAIL
    return body


def encode(values: Pcm, bits: int, tag: int = PCM_TAG) -> bytes:
    """int16 values in a wider or narrower sample format, losslessly where possible."""
    wide = values.astype(np.int64)
    if tag == FLOAT_TAG:
        return (values / 32768.0).astype(f"<f{bits // 8}").tobytes()
    if bits == 8:
        return ((wide >> 8) + 128).astype(np.uint8).tobytes()
    if bits == 24:
        shifted = (wide << 8) & 0xFFFFFF
        triples = np.stack([shifted & 0xFF, (shifted >> 8) & 0xFF, shifted >> 16], axis=1)
        return triples.astype(np.uint8).tobytes()
    return (wide << (bits - 16)).astype(f"<i{bits // 8}").tobytes()


def write_bytes(tmp_path: Path, blob: bytes, name: str = "in.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(blob)
    return path


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> Pcm:
    n = np.arange(round(rate * seconds))
    return np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * n / rate)).astype(np.int16)


def peak_hz(pcm: Pcm, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * rate / pcm.size)


# ---------------------------------------------------------------- write and read back


def test_write_then_read_is_exact(tmp_path: Path) -> None:
    values = sample_values()
    path = tmp_path / "out.wav"
    write_wav(path, values, rate=16000)
    pcm, rate = read_wav(path)
    assert rate == 16000
    assert pcm.dtype == np.int16
    np.testing.assert_array_equal(pcm, values)


def test_write_is_atomic_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    write_wav(path, np.ones(10, dtype=np.int16))
    write_wav(path, np.full(20, 5, dtype=np.int16))
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    pcm, rate = read_wav(path)
    assert rate == 48000
    np.testing.assert_array_equal(pcm, np.full(20, 5, dtype=np.int16))


def test_write_empty_signal(tmp_path: Path) -> None:
    write_wav(tmp_path / "empty.wav", np.zeros(0, dtype=np.int16))
    pcm, _ = read_wav(tmp_path / "empty.wav")
    assert pcm.size == 0


@pytest.mark.parametrize(
    "bad", [np.zeros(10, dtype=np.float32), np.zeros((10, 2), dtype=np.int16), [1, 2, 3]]
)
def test_write_rejects_non_mono_int16(tmp_path: Path, bad: Any) -> None:
    with pytest.raises(ValueError, match="1-D int16"):
        write_wav(tmp_path / "x.wav", bad)


def test_write_into_missing_folder_names_the_path(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "x.wav"
    with pytest.raises(AudioFileError, match="cannot write") as info:
        write_wav(target, np.zeros(4, dtype=np.int16))
    assert str(target) in str(info.value)


# ---------------------------------------------------------------- every layout


@pytest.mark.parametrize(
    ("tag", "bits", "extensible"),
    [
        (PCM_TAG, 16, False),
        (PCM_TAG, 24, False),
        (PCM_TAG, 32, False),
        (PCM_TAG, 8, False),
        (FLOAT_TAG, 32, False),
        (FLOAT_TAG, 64, False),
        (PCM_TAG, 24, True),
        (FLOAT_TAG, 32, True),
    ],
)
def test_reads_every_layout(tmp_path: Path, tag: int, bits: int, extensible: bool) -> None:
    values = sample_values()
    if bits == 8:  # 8-bit keeps only the high byte
        values = (values.astype(np.int32) >> 8 << 8).astype(np.int16)
    blob = riff(fmt_chunk(tag, 1, 22050, bits, extensible=extensible), encode(values, bits, tag))
    pcm, rate = read_wav(write_bytes(tmp_path, blob))
    assert rate == 22050
    np.testing.assert_array_equal(pcm, values)


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    left = sample_values(1000, seed=1) // 2
    right = sample_values(1000, seed=2) // 2
    frames = np.stack([left, right], axis=1).reshape(-1)
    path = write_bytes(tmp_path, riff(fmt_chunk(PCM_TAG, 2, 8000, 16), encode(frames, 16)))
    pcm, _ = read_wav(path)
    expected = (left.astype(np.float64) + right) / 2
    assert np.abs(pcm - expected).max() <= 0.5


def test_opposite_channels_cancel(tmp_path: Path) -> None:
    left = sample_values(1000)[2:] // 2
    frames = np.stack([left, -left], axis=1).reshape(-1)
    path = write_bytes(tmp_path, riff(fmt_chunk(PCM_TAG, 2, 48000, 16), encode(frames, 16)))
    pcm, _ = read_wav(path)
    assert not pcm.any()


def test_unknown_chunks_and_a_partial_last_frame_are_tolerated(tmp_path: Path) -> None:
    values = sample_values(100)
    data = encode(values, 16) + b"\x01"  # one stray byte after the last whole sample
    blob = riff(fmt_chunk(PCM_TAG, 1, 48000, 16), data, extra=b"LIST\x05\x00\x00\x00abcde\x00")
    pcm, _ = read_wav(write_bytes(tmp_path, blob))
    np.testing.assert_array_equal(pcm, values)


def test_data_size_past_the_end_is_cut_to_what_is_there(tmp_path: Path) -> None:
    values = sample_values(100)
    blob = bytearray(riff(fmt_chunk(PCM_TAG, 1, 48000, 16), encode(values, 16)))
    data_at = blob.index(b"data")
    blob[data_at + 4 : data_at + 8] = struct.pack("<I", 0xFFFFFFFF)  # as streaming writers do
    pcm, _ = read_wav(write_bytes(tmp_path, bytes(blob)))
    np.testing.assert_array_equal(pcm, values)


# ---------------------------------------------------------------- resampling to call audio


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_load_voice_resamples_to_48k(tmp_path: Path, rate: int) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, sine(1000.0, rate, 1.0), rate=rate)
    pcm = load_voice(path)
    assert pcm.dtype == np.int16
    assert abs(pcm.size - 48000) <= 1
    assert abs(peak_hz(pcm, 48000) - 1000.0) <= 2.0
    middle = pcm[4800:-4800].astype(np.float64)
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.5 * 32767 / np.sqrt(2), rel=0.02)


def test_load_voice_adds_no_delay(tmp_path: Path) -> None:
    click = np.zeros(16000, dtype=np.int16)
    click[8000] = 20000
    path = tmp_path / "click.wav"
    write_wav(path, click, rate=16000)
    pcm = load_voice(path)
    assert int(np.argmax(pcm)) == 24000


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is not installed")
@pytest.mark.parametrize("args", [["-b", "24"], ["-e", "floating-point", "-b", "32"], ["-c", "2"]])
def test_reads_files_written_by_sox(tmp_path: Path, args: list[str]) -> None:
    source = tmp_path / "src.wav"
    write_wav(source, sine(440.0, 44100, 0.5), rate=44100)
    converted = tmp_path / "sox.wav"
    subprocess.run(["sox", str(source), *args, str(converted)], check=True)
    pcm, rate = read_wav(converted)
    original, _ = read_wav(source)
    assert rate == 44100
    assert np.abs(pcm.astype(np.int32) - original).max() <= 1


# ---------------------------------------------------------------- refused files


def _fmt(tag: int = PCM_TAG, channels: int = 1, rate: int = 48000, bits: int = 16) -> bytes:
    return fmt_chunk(tag, channels, rate, bits)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "not a WAV file"),
        (b"ID3\x04" + b"\x00" * 40, "not a WAV file"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no 'fmt ' chunk"),
        (b"RIFF\x10\x00\x00\x00WAVEdata\x00\x00\x00\x00", "no 'fmt ' chunk"),
        (riff(_fmt(), b"")[:36], "no 'data' chunk"),
        (riff(b"\x01\x00\x01\x00", b""), "'fmt ' chunk of 4 bytes"),
        (riff(_fmt(tag=7, bits=8), b"\x00" * 8), "mu-law"),
        (riff(_fmt(tag=0x1234), b"\x00" * 8), "format tag 0x1234"),
        (riff(_fmt(bits=12), b"\x00" * 8), "12-bit integer PCM"),
        (riff(_fmt(tag=FLOAT_TAG, bits=16), b"\x00" * 8), "16-bit float"),
        (riff(_fmt(channels=0), b"\x00" * 8), "0 channels"),
        (riff(_fmt(rate=0), b"\x00" * 8), "sample rate 0 Hz"),
    ],
)
def test_refused_files_say_why(tmp_path: Path, blob: bytes, reason: str) -> None:
    path = write_bytes(tmp_path, blob)
    with pytest.raises(AudioFileError) as info:
        read_wav(path)
    message = str(info.value)
    assert reason in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no such file"):
        load_voice(tmp_path / "absent.wav")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="is a directory"):
        read_wav(tmp_path)


def test_audio_errors_share_a_base() -> None:
    assert issubclass(AudioFileError, audio.AudioError)
    assert issubclass(AudioDeviceError, audio.AudioError)


# ---------------------------------------------------------------- sources


def drain(source: AudioSource, limit: int = 100_000) -> list[Pcm]:
    frames: list[Pcm] = []
    for _ in range(limit):
        frame = source.read_frame()
        if frame is None:
            return frames
        frames.append(frame)
    raise AssertionError("source did not end")


def test_wav_source_frames_and_pads(tmp_path: Path) -> None:
    values = sample_values(2 * FRAME_SAMPLES + 100)
    path = tmp_path / "v.wav"
    write_wav(path, values)
    source = WavSource(path)
    assert isinstance(source, AudioSource)
    frames = drain(source)
    assert len(frames) == 3
    assert all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.int16 for f in frames)
    joined = np.concatenate(frames)
    np.testing.assert_array_equal(joined[: values.size], values)
    assert not joined[values.size :].any()
    assert source.read_frame() is None


def test_wav_source_loops_without_a_gap(tmp_path: Path) -> None:
    values = sample_values(FRAME_SAMPLES + 300)
    path = tmp_path / "v.wav"
    write_wav(path, values)
    source = WavSource(path, loop=True)
    frames = [source.read_frame() for _ in range(7)]
    joined = np.concatenate([f for f in frames if f is not None])
    assert joined.size == 7 * FRAME_SAMPLES
    np.testing.assert_array_equal(joined, np.resize(values, joined.size))
    source.close()
    assert source.read_frame() is None


def test_wav_source_of_an_empty_file_ends_at_once(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    write_wav(path, np.zeros(0, dtype=np.int16))
    assert WavSource(path, loop=True).read_frame() is None


def test_wav_source_refuses_a_bad_file(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no such file"):
        WavSource(tmp_path / "absent.wav")


def test_silence_source_length() -> None:
    frames = drain(SilenceSource(seconds=0.05))
    assert len(frames) == 3  # 50 ms rounds up to three 20 ms frames
    assert not np.concatenate(frames).any()
    endless = SilenceSource()
    assert all(endless.read_frame() is not None for _ in range(500))
    endless.close()
    assert endless.read_frame() is None


def test_tone_source_is_one_continuous_sine() -> None:
    frames = drain(ToneSource(1000.0, seconds=0.2, amplitude=0.25))
    assert len(frames) == 10
    joined = np.concatenate(frames)
    n = np.arange(joined.size)
    expected = np.round(0.25 * 32768 * np.sin(2 * np.pi * 1000.0 * n / 48000))
    assert np.abs(joined - expected).max() <= 1
    assert abs(peak_hz(joined, 48000) - 1000.0) <= 5.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frequency": 0.0}, "frequency"),
        ({"frequency": 30000.0}, "frequency"),
        ({"amplitude": 1.5}, "amplitude"),
        ({"seconds": -1.0}, "seconds"),
    ],
)
def test_tone_source_rejects_bad_settings(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ToneSource(**kwargs)


# ---------------------------------------------------------------- sinks


def test_wav_sink_writes_on_close(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    sink = WavSink(path)
    assert isinstance(sink, AudioSink)
    frames = [sample_values(FRAME_SAMPLES, seed=s) for s in range(5)]
    for frame in frames:
        sink.write_frame(frame)
    assert not path.exists()
    sink.close()
    sink.close()
    pcm, rate = read_wav(path)
    assert rate == 48000
    np.testing.assert_array_equal(pcm, np.concatenate(frames))
    with pytest.raises(ValueError, match="closed"):
        sink.write_frame(frames[0])


def test_wav_sink_is_bounded(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "rec.wav", max_seconds=0.1)  # five frames
    for _ in range(8):
        sink.write_frame(np.ones(FRAME_SAMPLES, dtype=np.int16))
    assert sink.samples == 5 * FRAME_SAMPLES
    assert sink.dropped_frames == 3
    sink.close()
    pcm, _ = read_wav(tmp_path / "rec.wav")
    assert pcm.size == 5 * FRAME_SAMPLES


def test_wav_sink_keeps_a_copy(tmp_path: Path) -> None:
    sink = WavSink(tmp_path / "rec.wav")
    frame = np.full(FRAME_SAMPLES, 3, dtype=np.int16)
    sink.write_frame(frame)
    frame[:] = 9
    sink.close()
    pcm, _ = read_wav(tmp_path / "rec.wav")
    assert set(pcm.tolist()) == {3}


def test_sinks_reject_wrong_frames(tmp_path: Path) -> None:
    for sink in (WavSink(tmp_path / "r.wav"), NullSink()):
        with pytest.raises(ValueError, match="int16"):
            sink.write_frame(np.zeros(FRAME_SAMPLES, dtype=np.float32))


def test_null_sink_counts() -> None:
    sink = NullSink()
    for _ in range(4):
        sink.write_frame(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    sink.close()
    assert (sink.frames, sink.samples) == (4, 4 * FRAME_SAMPLES)


# ---------------------------------------------------------------- choosing


def test_call_audio_chooses_by_options(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    write_wav(path, sample_values(FRAME_SAMPLES))
    files = open_call_audio(str(path), str(tmp_path / "out.wav"), devices=True)
    assert isinstance(files.source, WavSource) and isinstance(files.sink, WavSink)
    assert files.note is None
    files.close()
    quiet = open_call_audio(None, None, devices=False)
    assert isinstance(quiet.source, SilenceSource) and isinstance(quiet.sink, NullSink)
    assert quiet.note is None


def test_call_audio_closes_the_source_when_the_sink_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "in.wav"
    write_wav(path, sample_values(FRAME_SAMPLES))
    closed: list[bool] = []

    class Watched(audio.WavSource):
        def close(self) -> None:
            closed.append(True)
            super().close()

    def refuse(_path: str) -> None:
        raise AudioFileError(_path, "cannot write there")

    monkeypatch.setattr(audio, "WavSource", Watched)
    monkeypatch.setattr(audio, "WavSink", refuse)
    with pytest.raises(AudioFileError, match="cannot write there"):
        open_call_audio(str(path), str(tmp_path / "out.wav"), devices=False)
    assert closed == [True]


# ---------------------------------------------------------------- devices


def _has_sound_device() -> bool:
    try:
        import sounddevice  # noqa: PLC0415 -- only to learn whether a device exists
    except (ImportError, OSError):
        return False
    try:
        return len(sounddevice.query_devices()) > 0
    except sounddevice.PortAudioError:
        return False


@pytest.mark.skipif(_has_sound_device(), reason="this machine has a sound device")
@pytest.mark.parametrize("opener", [DeviceSource, DeviceSink])
def test_no_device_is_a_clear_error(opener: type) -> None:
    with pytest.raises(AudioDeviceError, match=r"cannot open the (input|output) sound device: "):
        opener()


@pytest.mark.skipif(_has_sound_device(), reason="this machine has a sound device")
def test_call_audio_without_devices_falls_back_and_says_why() -> None:
    audio = open_call_audio(None, None, devices=True)
    assert isinstance(audio.source, SilenceSource) and isinstance(audio.sink, NullSink)
    assert audio.note is not None
    assert "no microphone" in audio.note and "sending silence" in audio.note
    assert "no speaker" in audio.note and "discarding received audio" in audio.note


def test_missing_sounddevice_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(AudioDeviceError, match="sounddevice is not installed"):
        DeviceSource()


class _StandInStream:
    """Records the callback PortAudio would call; start/stop/close are counted."""

    opened: ClassVar[list[_StandInStream]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[str] = []
        _StandInStream.opened.append(self)

    def start(self) -> None:
        self.calls.append("start")

    def stop(self) -> None:
        self.calls.append("stop")

    def close(self) -> None:
        self.calls.append("close")


@pytest.fixture
def stand_in(monkeypatch: pytest.MonkeyPatch) -> list[_StandInStream]:
    module = types.ModuleType("sounddevice")
    module.InputStream = _StandInStream  # type: ignore[attr-defined]
    module.OutputStream = _StandInStream  # type: ignore[attr-defined]
    module.PortAudioError = RuntimeError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sounddevice", module)
    _StandInStream.opened = []
    return _StandInStream.opened


def test_device_source_queue_drops_oldest(stand_in: list[_StandInStream]) -> None:
    source = DeviceSource(queue_frames=3)
    stream = stand_in[0]
    assert stream.kwargs | {"callback": None} == {
        "samplerate": 48000,
        "channels": 1,
        "dtype": "int16",
        "blocksize": 960,
        "device": None,
        "callback": None,
    }
    callback = stream.kwargs["callback"]
    for value in range(5):
        callback(np.full((FRAME_SAMPLES, 1), value, dtype=np.int16), FRAME_SAMPLES, None, None)
    assert source.dropped == 2
    got = [source.read_frame() for _ in range(4)]
    assert [int(f[0]) for f in got if f is not None] == [2, 3, 4, 0]
    assert source.underruns == 1
    source.close()
    source.close()
    assert stream.calls == ["start", "stop", "close"]
    assert source.read_frame() is None


def test_device_sink_plays_queued_frames_then_silence(stand_in: list[_StandInStream]) -> None:
    sink = DeviceSink(queue_frames=2)
    callback = stand_in[0].kwargs["callback"]
    for value in (1, 2, 3):
        sink.write_frame(np.full(FRAME_SAMPLES, value, dtype=np.int16))
    assert sink.dropped == 1
    played = []
    for _ in range(3):
        out = np.full((FRAME_SAMPLES, 1), 99, dtype=np.int16)
        callback(out, FRAME_SAMPLES, None, None)
        played.append(set(out[:, 0].tolist()))
    assert played == [{2}, {3}, {0}]
    assert sink.underruns == 1
    sink.close()
