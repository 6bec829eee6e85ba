"""Audio in and out of a Hopline voice call: WAV files, tones, silence and sound devices.

Calls carry 48 kHz mono signed 16-bit audio in 20 ms frames of 960 samples
(numpy ``int16`` arrays). This module turns the outside world into such frames
and back:

* :func:`read_wav` / :func:`load_voice` read any PCM WAV file (8, 16, 24 or
  32-bit integers, 32 or 64-bit floats, plain or ``WAVE_FORMAT_EXTENSIBLE``,
  any channel count, any rate). The RIFF chunks are parsed here rather than
  with the stdlib :mod:`wave`, which on Python 3.11 rejects float and
  extensible files; one small parser handles every layout alike and names
  the exact reason a file is refused. Channels are mixed down by averaging.
  :func:`load_voice` resamples to 48 kHz with
  :func:`scipy.signal.resample_poly`: a whole-signal polyphase filter that is
  zero-phase (it adds no delay, which matters when a recording is later
  aligned and scored) and needs no flushing, unlike a streaming resampler.
* :func:`write_wav` writes 16-bit mono atomically (a temporary file in the
  same folder, then a rename), so a reader never sees half a file.
* Frame sources (:class:`WavSource`, :class:`SilenceSource`,
  :class:`ToneSource`, :class:`DeviceSource`) and sinks (:class:`WavSink`,
  :class:`NullSink`, :class:`DeviceSink`) move one 20 ms frame at a time, the
  shape the call runtime pumps. :func:`open_source` / :func:`open_sink` pick
  one from the ``--play`` / ``--record`` options.
* Device streams use ``sounddevice`` (PortAudio), imported only when a device
  is asked for. The PortAudio callback thread and the caller meet in a
  bounded queue: when it is full the oldest frame is dropped and counted, and
  an empty queue yields silence (also counted), so neither side ever blocks.
  Headless machines have no device: the constructors then raise
  :class:`AudioDeviceError` with PortAudio's reason.

Every refused file raises :class:`AudioFileError` with a one-line message
naming the path and the reason; caller mistakes (a frame of the wrong dtype or
shape) raise :class:`ValueError`.
"""

from __future__ import annotations

import contextlib
import math
import os
import struct
import tempfile
import threading
import wave
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

__all__ = [
    "CallAudio",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "AudioDeviceError",
    "AudioError",
    "AudioFileError",
    "AudioSink",
    "AudioSource",
    "DeviceSink",
    "DeviceSource",
    "NullSink",
    "SilenceSource",
    "ToneSource",
    "WavSink",
    "WavSource",
    "load_voice",
    "open_call_audio",
    "read_wav",
    "resample",
    "to_int16",
    "write_wav",
]

SAMPLE_RATE: Final = 48000
"""Sample rate of call audio, in Hz."""
FRAME_SAMPLES: Final = 960
"""Samples in one 20 ms frame at :data:`SAMPLE_RATE`."""

_FORMAT_PCM: Final = 0x0001
_FORMAT_FLOAT: Final = 0x0003
_FORMAT_EXTENSIBLE: Final = 0xFFFE
_FORMAT_NAMES: Final = {0x0002: "ADPCM", 0x0006: "A-law", 0x0007: "mu-law", 0x0055: "MP3"}
_PCM_BITS: Final = (8, 16, 24, 32)
_FLOAT_BITS: Final = (32, 64)
_MAX_CHANNELS: Final = 64
_MAX_RATE: Final = 768_000
_DEFAULT_QUEUE_FRAMES: Final = 50

Pcm = npt.NDArray[np.int16]
"""Mono signed 16-bit samples, shape ``(n,)``."""
Samples = npt.NDArray[np.float64]
"""Samples scaled to [-1, 1], shape ``(n,)`` or ``(n, channels)``."""


class AudioError(Exception):
    """Base of every audio input/output error."""


class AudioFileError(AudioError):
    """A WAV file is missing, unreadable, malformed or in an unsupported format."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioDeviceError(AudioError):
    """No sound device, no PortAudio, or the device stream cannot be opened."""


@runtime_checkable
class AudioSource(Protocol):
    """Where a call's outgoing audio comes from, one 20 ms frame at a time."""

    def read_frame(self) -> Pcm | None:
        """Return the next 960 int16 samples, or ``None`` at the end of input."""
        ...

    def close(self) -> None:
        """Release the source; further reads return ``None``."""
        ...


@runtime_checkable
class AudioSink(Protocol):
    """Where a call's incoming audio goes, one 20 ms frame at a time."""

    def write_frame(self, pcm: Pcm) -> None:
        """Take one frame of mono int16 samples."""
        ...

    def close(self) -> None:
        """Finish: flush or write out what was taken. Idempotent."""
        ...


# --- WAV reading -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Format:
    tag: int  # _FORMAT_PCM or _FORMAT_FLOAT after resolving EXTENSIBLE
    channels: int
    rate: int
    bits: int


def read_wav(path: str | os.PathLike[str]) -> tuple[Pcm, int]:
    """Read a WAV file as mono int16 at its own rate; return ``(samples, rate)``.

    Multichannel files are mixed down by averaging. Raises
    :class:`AudioFileError` for a missing, unreadable, malformed or
    unsupported file.
    """
    samples, rate = _read_float(path)
    return to_int16(samples), rate


def load_voice(path: str | os.PathLike[str]) -> Pcm:
    """Read any PCM WAV file as call audio: 48 kHz mono int16."""
    samples, rate = _read_float(path)
    return to_int16(resample(samples, rate, SAMPLE_RATE))


def resample(samples: npt.ArrayLike, rate: int, target: int) -> Samples:
    """Resample a mono signal from ``rate`` to ``target`` Hz (zero-phase polyphase).

    Returns float64 samples; int16 input keeps its scale. The output has
    ``ceil(len * target / rate)`` samples.
    """
    from scipy.signal import resample_poly  # noqa: PLC0415 -- scipy loads only when needed

    data = np.asarray(samples, dtype=np.float64)
    if rate <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {rate} and {target}")
    if rate == target or data.size == 0:
        return data.copy()
    common = math.gcd(rate, target)
    out: Samples = resample_poly(data, target // common, rate // common)
    return out


def to_int16(samples: npt.ArrayLike) -> Pcm:
    """Scale float samples in [-1, 1] to int16, rounding and clipping."""
    data = np.asarray(samples, dtype=np.float64) * 32768.0
    return np.clip(np.rint(data), -32768, 32767).astype(np.int16)


def _read_float(path: str | os.PathLike[str]) -> tuple[Samples, int]:
    blob = _read_bytes(path)
    fmt, data = _parse_riff(path, blob)
    samples = _decode(fmt, data)
    mono: Samples = samples.mean(axis=1) if fmt.channels > 1 else samples[:, 0]
    return mono, fmt.rate


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise AudioFileError(path, "no such file") from None
    except IsADirectoryError:
        raise AudioFileError(path, "is a directory, not a WAV file") from None
    except OSError as exc:
        raise AudioFileError(path, f"cannot read: {exc.strerror or exc}") from None


def _parse_riff(path: str | os.PathLike[str], blob: bytes) -> tuple[_Format, bytes]:
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AudioFileError(path, "not a WAV file (no RIFF/WAVE header)")
    chunks = _chunks(blob)
    if b"fmt " not in chunks:
        raise AudioFileError(path, "malformed WAV: no 'fmt ' chunk")
    if b"data" not in chunks:
        raise AudioFileError(path, "malformed WAV: no 'data' chunk")
    fmt = _parse_fmt(path, chunks[b"fmt "])
    data = chunks[b"data"]
    frame_bytes = fmt.channels * fmt.bits // 8
    return fmt, data[: len(data) - len(data) % frame_bytes]


def _chunks(blob: bytes) -> dict[bytes, bytes]:
    """Split the RIFF body into chunks; a size past the end is cut to what is there."""
    found: dict[bytes, bytes] = {}
    pos = 12
    while pos + 8 <= len(blob):
        name = blob[pos : pos + 4]
        (size,) = struct.unpack_from("<I", blob, pos + 4)
        body = blob[pos + 8 : pos + 8 + size]
        found.setdefault(name, body)
        pos += 8 + size + (size & 1)
    return found


def _parse_fmt(path: str | os.PathLike[str], body: bytes) -> _Format:
    if len(body) < 16:
        raise AudioFileError(path, f"malformed WAV: 'fmt ' chunk of {len(body)} bytes")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _FORMAT_EXTENSIBLE:
        if len(body) < 26:
            raise AudioFileError(path, "malformed WAV: extensible 'fmt ' chunk too short")
        (tag,) = struct.unpack_from("<H", body, 24)  # first two bytes of the subformat GUID
    fmt = _Format(tag, channels, rate, bits)
    _check_format(path, fmt)
    return fmt


def _check_format(path: str | os.PathLike[str], fmt: _Format) -> None:
    if fmt.tag not in (_FORMAT_PCM, _FORMAT_FLOAT):
        name = _FORMAT_NAMES.get(fmt.tag, f"format tag 0x{fmt.tag:04x}")
        raise AudioFileError(path, f"unsupported WAV encoding {name}: only PCM and float")
    allowed = _PCM_BITS if fmt.tag == _FORMAT_PCM else _FLOAT_BITS
    if fmt.bits not in allowed:
        kind = "integer PCM" if fmt.tag == _FORMAT_PCM else "float"
        raise AudioFileError(path, f"unsupported WAV: {fmt.bits}-bit {kind}")
    if not 1 <= fmt.channels <= _MAX_CHANNELS:
        raise AudioFileError(path, f"malformed WAV: {fmt.channels} channels")
    if not 1 <= fmt.rate <= _MAX_RATE:
        raise AudioFileError(path, f"malformed WAV: sample rate {fmt.rate} Hz")


def _decode(fmt: _Format, data: bytes) -> Samples:
    """Turn the data chunk into float64 samples of shape ``(frames, channels)``."""
    raw: npt.NDArray[Any]
    if fmt.tag == _FORMAT_FLOAT:
        raw = np.frombuffer(data, dtype=f"<f{fmt.bits // 8}").astype(np.float64)
        raw = np.nan_to_num(raw, nan=0.0, posinf=1.0, neginf=-1.0)
    elif fmt.bits == 8:
        raw = (np.frombuffer(data, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif fmt.bits == 24:
        raw = _int24(data) / float(1 << 23)
    else:
        raw = np.frombuffer(data, dtype=f"<i{fmt.bits // 8}") / float(1 << (fmt.bits - 1))
    return np.asarray(raw, dtype=np.float64).reshape(-1, fmt.channels)


def _int24(data: bytes) -> npt.NDArray[np.float64]:
    triples = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
    value = np.where(value >= 1 << 23, value - (1 << 24), value)
    return value.astype(np.float64)


# --- WAV writing -----------------------------------------------------------------


def write_wav(path: str | os.PathLike[str], pcm: npt.ArrayLike, rate: int = SAMPLE_RATE) -> None:
    """Write mono int16 samples as a 16-bit PCM WAV file, atomically.

    The file is written to a temporary name in the same folder and renamed
    into place. Raises :class:`ValueError` for samples that are not 1-D int16
    and :class:`AudioFileError` when the file cannot be written.
    """
    samples = _check_pcm(pcm, "write_wav")
    if rate <= 0:
        raise ValueError(f"write_wav: sample rate must be positive, got {rate}")
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise AudioFileError(path, f"cannot write: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle, wave.open(handle, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes(samples.astype("<i2").tobytes())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise AudioFileError(path, f"cannot write: {exc.strerror or exc}") from None


def _check_pcm(pcm: npt.ArrayLike, where: str) -> Pcm:
    samples = np.asarray(pcm)
    if samples.dtype != np.int16 or samples.ndim != 1:
        raise ValueError(
            f"{where}: expected 1-D int16 samples, got {samples.dtype} of shape {samples.shape}"
        )
    return samples


# --- frame sources ---------------------------------------------------------------


class WavSource:
    """Frames from a WAV file (any format :func:`load_voice` reads).

    The last frame is padded with zeros. With ``loop`` the file repeats
    without a gap and never ends (until :meth:`close`); an empty file ends at
    once either way.
    """

    def __init__(self, path: str | os.PathLike[str], loop: bool = False) -> None:
        self.path = Path(path)
        self.loop = loop
        self._pcm = load_voice(path)
        self._pos = 0
        self._closed = False

    @property
    def samples(self) -> int:
        """Length of the file at 48 kHz, in samples."""
        return int(self._pcm.size)

    def read_frame(self) -> Pcm | None:
        """Return the next 960 samples, or ``None`` at the end (never with ``loop``)."""
        if self._closed or self._pcm.size == 0:
            return None
        if self.loop:
            return self._looped()
        if self._pos >= self._pcm.size:
            return None
        frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        chunk = self._pcm[self._pos : self._pos + FRAME_SAMPLES]
        frame[: chunk.size] = chunk
        self._pos += FRAME_SAMPLES
        return frame

    def _looped(self) -> Pcm:
        idx = (self._pos + np.arange(FRAME_SAMPLES)) % self._pcm.size
        self._pos = int((self._pos + FRAME_SAMPLES) % self._pcm.size)
        return self._pcm[idx]

    def close(self) -> None:
        """Stop; further reads return ``None``."""
        self._closed = True


class SilenceSource:
    """Frames of zeros: endless, or ``seconds`` long (rounded up to whole frames)."""

    def __init__(self, seconds: float | None = None) -> None:
        self._left = _frames_for(seconds)
        self._closed = False

    def read_frame(self) -> Pcm | None:
        """Return 960 zero samples, or ``None`` once the duration is over."""
        if self._closed or self._left == 0:
            return None
        if self._left is not None:
            self._left -= 1
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)

    def close(self) -> None:
        """Stop; further reads return ``None``."""
        self._closed = True


class ToneSource:
    """A sine tone with continuous phase across frames: endless or ``seconds`` long."""

    def __init__(
        self, frequency: float = 440.0, seconds: float | None = None, *, amplitude: float = 0.3
    ) -> None:
        if not 0.0 < frequency < SAMPLE_RATE / 2:
            raise ValueError(f"tone frequency must be within (0, 24000) Hz, got {frequency}")
        if not 0.0 <= amplitude <= 1.0:
            raise ValueError(f"tone amplitude must be within [0, 1], got {amplitude}")
        self.frequency = frequency
        self.amplitude = amplitude
        self._left = _frames_for(seconds)
        self._start = 0
        self._closed = False

    def read_frame(self) -> Pcm | None:
        """Return the next 960 samples of the tone, or ``None`` once it is over."""
        if self._closed or self._left == 0:
            return None
        if self._left is not None:
            self._left -= 1
        n = self._start + np.arange(FRAME_SAMPLES, dtype=np.float64)
        self._start += FRAME_SAMPLES
        tone = self.amplitude * np.sin(2.0 * np.pi * self.frequency * n / SAMPLE_RATE)
        return to_int16(tone)

    def close(self) -> None:
        """Stop; further reads return ``None``."""
        self._closed = True


def _frames_for(seconds: float | None) -> int | None:
    if seconds is None:
        return None
    if not seconds >= 0 or math.isinf(seconds):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds}")
    return math.ceil(seconds * SAMPLE_RATE / FRAME_SAMPLES)


# --- frame sinks -----------------------------------------------------------------


class WavSink:
    """Collects frames and writes them as a 48 kHz WAV file on :meth:`close`.

    At most ``max_seconds`` of audio is kept; frames past that are dropped and
    counted in :attr:`dropped_frames`.
    """

    def __init__(self, path: str | os.PathLike[str], max_seconds: float = 3600.0) -> None:
        if not max_seconds > 0 or math.isinf(max_seconds):
            raise ValueError(f"max_seconds must be a finite number > 0, got {max_seconds}")
        self.path = Path(path)
        self.max_samples = int(max_seconds * SAMPLE_RATE)
        self.dropped_frames = 0
        self._frames: list[Pcm] = []
        self._samples = 0
        self._closed = False

    @property
    def samples(self) -> int:
        """Samples collected so far."""
        return self._samples

    def write_frame(self, pcm: Pcm) -> None:
        """Keep one frame (1-D int16), or count it as dropped past the bound."""
        frame = _check_pcm(pcm, "WavSink.write_frame")
        if self._closed:
            raise ValueError(f"WavSink.write_frame: {self.path} is already closed")
        if self._samples + frame.size > self.max_samples:
            self.dropped_frames += 1
            return
        self._frames.append(frame.copy())
        self._samples += frame.size

    def close(self) -> None:
        """Write the file (once); raises :class:`AudioFileError` if it cannot."""
        if self._closed:
            return
        self._closed = True
        pcm = np.concatenate(self._frames) if self._frames else np.zeros(0, dtype=np.int16)
        self._frames.clear()
        write_wav(self.path, pcm)


class NullSink:
    """Discards frames, counting them."""

    def __init__(self) -> None:
        self.frames = 0
        self.samples = 0

    def write_frame(self, pcm: Pcm) -> None:
        """Count one frame (1-D int16) and drop it."""
        frame = _check_pcm(pcm, "NullSink.write_frame")
        self.frames += 1
        self.samples += frame.size

    def close(self) -> None:
        """Nothing to release."""


# --- sound devices ---------------------------------------------------------------


class _FrameQueue:
    """A bounded frame queue shared with the PortAudio thread; drops the oldest when full."""

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"queue must hold at least one frame, got {frames}")
        self._items: deque[Pcm] = deque()
        self._limit = frames
        self._lock = threading.Lock()
        self.dropped = 0
        self.underruns = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def put(self, frame: Pcm) -> None:
        with self._lock:
            if len(self._items) >= self._limit:
                self._items.popleft()
                self.dropped += 1
            self._items.append(frame)

    def get(self) -> Pcm:
        """The oldest frame, or silence (counted as an underrun) when empty."""
        with self._lock:
            if self._items:
                return self._items.popleft()
            self.underruns += 1
        return np.zeros(FRAME_SAMPLES, dtype=np.int16)


def _sounddevice() -> Any:
    try:
        import sounddevice  # noqa: PLC0415 -- PortAudio loads only when a device is used
    except ImportError:
        raise AudioDeviceError("sound device unavailable: sounddevice is not installed") from None
    except OSError as exc:
        raise AudioDeviceError(f"sound device unavailable: PortAudio not found ({exc})") from None
    return sounddevice


def _open_stream(kind: str, device: int | str | None, callback: Any) -> Any:
    sd = _sounddevice()
    factory = sd.InputStream if kind == "input" else sd.OutputStream
    try:
        stream = factory(
            samplerate=SAMPLE_RATE,
            channels=1,
            dtype="int16",
            blocksize=FRAME_SAMPLES,
            device=device,
            callback=callback,
        )
        stream.start()
    except (sd.PortAudioError, ValueError) as exc:
        raise AudioDeviceError(f"cannot open the {kind} sound device: {exc}") from None
    return stream


class DeviceSource:
    """Frames captured from a sound card at 48 kHz mono (sounddevice ``InputStream``).

    :meth:`read_frame` never blocks: it returns the oldest captured frame, or
    silence when none is waiting (counted in :attr:`underruns`). When the
    caller falls behind, the oldest frames are dropped (:attr:`dropped`).
    """

    def __init__(
        self, device: int | str | None = None, *, queue_frames: int = _DEFAULT_QUEUE_FRAMES
    ) -> None:
        self._queue = _FrameQueue(queue_frames)
        self._stream = _open_stream("input", device, self._callback)
        self._closed = False

    @property
    def dropped(self) -> int:
        """Captured frames dropped because the queue was full."""
        return self._queue.dropped

    @property
    def underruns(self) -> int:
        """Reads answered with silence because nothing was captured yet."""
        return self._queue.underruns

    def _callback(self, indata: Any, frames: int, time: Any, status: Any) -> None:
        self._queue.put(np.array(indata[:, 0], dtype=np.int16))

    def read_frame(self) -> Pcm | None:
        """Return the oldest captured frame (or silence); ``None`` after :meth:`close`."""
        if self._closed:
            return None
        return self._queue.get()

    def close(self) -> None:
        """Stop and close the stream. Idempotent."""
        if not self._closed:
            self._closed = True
            self._stream.stop()
            self._stream.close()


class DeviceSink:
    """Frames played on a sound card at 48 kHz mono (sounddevice ``OutputStream``).

    Frames wait in a bounded queue for the PortAudio callback; when it is full
    the oldest is dropped (:attr:`dropped`), and when it runs dry the card
    plays silence (:attr:`underruns`).
    """

    def __init__(
        self, device: int | str | None = None, *, queue_frames: int = _DEFAULT_QUEUE_FRAMES
    ) -> None:
        self._queue = _FrameQueue(queue_frames)
        self._stream = _open_stream("output", device, self._callback)
        self._closed = False

    @property
    def dropped(self) -> int:
        """Frames dropped because the queue was full."""
        return self._queue.dropped

    @property
    def underruns(self) -> int:
        """Callback periods played as silence because no frame was waiting."""
        return self._queue.underruns

    def _callback(self, outdata: Any, frames: int, time: Any, status: Any) -> None:
        frame = self._queue.get()
        outdata[:, 0] = 0
        outdata[: min(frames, frame.size), 0] = frame[:frames]

    def write_frame(self, pcm: Pcm) -> None:
        """Queue one frame (1-D int16) for playing."""
        frame = _check_pcm(pcm, "DeviceSink.write_frame")
        if not self._closed:
            self._queue.put(frame.copy())

    def close(self) -> None:
        """Stop and close the stream. Idempotent."""
        if not self._closed:
            self._closed = True
            self._stream.stop()
            self._stream.close()


# --- choosing ----------------------------------------------------------------------


@dataclass
class CallAudio:
    """What a call plays from and into, and a note when a device was missing."""

    source: AudioSource
    sink: AudioSink
    note: str | None = None

    def close(self) -> None:
        """Close both ends (the sink finishes its WAV file)."""
        try:
            self.source.close()
        finally:
            self.sink.close()


def open_call_audio(play: str | None, record: str | None, *, devices: bool) -> CallAudio:
    """The ends of a call: the ``play`` WAV file, else the microphone (with
    ``devices``), else silence; the ``record`` WAV file, else the speaker, else
    nothing. A missing device is not an error: it is said in ``note``.

    Raises :class:`AudioFileError` for a bad ``play`` file; when opening the
    sink fails, the source is closed before the error goes on.
    """
    notes: list[str] = []
    source: AudioSource
    if play is not None:
        source = WavSource(play)
    else:
        source = _device_or(DeviceSource, SilenceSource, devices, "microphone", notes)
    try:
        sink: AudioSink
        if record is not None:
            sink = WavSink(record)
        else:
            sink = _device_or(DeviceSink, NullSink, devices, "speaker", notes)
    except BaseException:
        source.close()
        raise
    return CallAudio(source, sink, "; ".join(notes) or None)


def _device_or(device: Any, fallback: Any, wanted: bool, what: str, notes: list[str]) -> Any:
    if wanted:
        try:
            return device()
        except AudioDeviceError as exc:
            doing = "sending silence" if what == "microphone" else "discarding received audio"
            notes.append(f"no {what} ({exc}): {doing}")
    return fallback()
