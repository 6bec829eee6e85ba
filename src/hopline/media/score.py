"""Objective voice quality for Hopline calls: alignment and wideband PESQ.

A call's quality is judged by comparing what was sent (the clean reference)
with what came out at the far end (the degraded signal), using wideband PESQ
(ITU-T P.862.2, the ``pesq`` package) — a score from about 1 (bad) to 4.64
(identical). PESQ is sensitive to a constant delay between the two signals
(the codec and the jitter buffer add one; an unaligned comparison loses about
0.25), so the degraded signal is aligned first:

* :func:`find_lag` cross-correlates the two signals through the FFT
  (:func:`scipy.signal.correlate`) and takes the strongest peak within ±1 s;
  a positive lag means the degraded signal is late.
* :func:`align` shifts the degraded signal by that lag and trims or
  zero-pads it to the reference length; :func:`delay_ms` reports the lag.
* :func:`pesq_wb` resamples both signals to 16 kHz (the rate wideband PESQ
  defines), aligns them there, and scores.

Two simpler measures of a recording serve conference tests, where each
person has a voice or a tone of its own: :func:`tone_db`, the level of one
frequency (a single-bin DFT over sliding windows), and
:func:`longest_silence`, the longest run of near-silent frames between the
first and last sound (a gap a listener would hear).

Inputs are 1-D sample arrays (int16 call audio, or floats on any common
scale). Everything that keeps a score from being computed — ``pesq`` not
installed, a signal that is too short or silent, PESQ finding no utterance —
raises :class:`ScoreError` with the reason; wrong shapes or rates raise
:class:`ValueError`.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt

from hopline.media.audio import SAMPLE_RATE, resample

__all__ = [
    "PESQ_RATE",
    "ScoreError",
    "align",
    "delay_ms",
    "find_lag",
    "longest_silence",
    "pesq_wb",
    "tone_db",
]

PESQ_RATE: Final = 16000
"""Sample rate at which wideband PESQ is computed."""
MAX_LAG_SECONDS: Final = 1.0
"""Widest delay :func:`find_lag` searches, either way."""
_SILENCE_RMS: Final = 1e-4
"""RMS, as a fraction of full scale (-80 dBFS), below which a signal counts as silent."""

Signal = npt.NDArray[np.float64]


class ScoreError(Exception):
    """A quality score cannot be computed (no ``pesq``, too short, silent, no speech)."""


def find_lag(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int) -> int:
    """Samples by which ``degraded`` lags ``reference`` (negative: it is early).

    The peak of the FFT cross-correlation within ±1 s (and within the signal
    lengths). Silent or empty signals give 0.
    """
    from scipy.signal import correlate, correlation_lags  # noqa: PLC0415 -- lazy scipy

    ref, deg = _signal(reference, "reference"), _signal(degraded, "degraded")
    _check_rate(rate)
    if ref.size == 0 or deg.size == 0 or not ref.any() or not deg.any():
        return 0
    corr = correlate(deg, ref, mode="full", method="fft")
    lags = correlation_lags(deg.size, ref.size, mode="full")
    window = np.abs(lags) <= round(MAX_LAG_SECONDS * rate)
    return int(lags[window][np.argmax(corr[window])])


def align(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int) -> Signal:
    """Shift ``degraded`` by :func:`find_lag` and trim or zero-pad it to the reference length."""
    ref, deg = _signal(reference, "reference"), _signal(degraded, "degraded")
    return _shift(deg, find_lag(ref, deg, rate), ref.size)


def delay_ms(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int) -> float:
    """The delay of ``degraded`` behind ``reference`` found by :func:`find_lag`, in ms."""
    return find_lag(reference, degraded, rate) * 1000.0 / rate


def pesq_wb(reference: npt.ArrayLike, degraded: npt.ArrayLike, rate: int = SAMPLE_RATE) -> float:
    """Wideband PESQ (MOS-LQO, about 1.0 to 4.64) of ``degraded`` against ``reference``.

    Both are resampled to 16 kHz and aligned before scoring. Raises
    :class:`ScoreError` when ``pesq`` is not installed, when either signal is
    empty or silent, or when PESQ itself refuses the pair (shorter than a
    quarter of a second, no utterance found).
    """
    pesq = _pesq_module()
    ref, deg = _signal(reference, "reference"), _signal(degraded, "degraded")
    _check_rate(rate)
    _check_scorable(ref, deg, _full_scale(reference, degraded))
    ref16 = resample(ref, rate, PESQ_RATE)
    deg16 = align(ref16, resample(deg, rate, PESQ_RATE), PESQ_RATE)
    try:
        score = pesq.pesq(PESQ_RATE, ref16, deg16, "wb")
    except pesq.PesqError as exc:
        raise ScoreError(_pesq_reason(pesq, exc)) from None
    return float(score)


def _pesq_reason(pesq: Any, exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    text = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    text = text.strip() or type(exc).__name__
    if isinstance(exc, pesq.BufferTooShortError):
        return f"signals are too short to score: {text}"
    if isinstance(exc, pesq.NoUtterancesError):
        return f"PESQ found no speech in the reference: {text}"
    return f"PESQ cannot score this pair: {text}"


def _pesq_module() -> Any:
    try:
        import pesq  # noqa: PLC0415 -- an optional dependency, loaded only to score
    except ImportError:
        raise ScoreError("PESQ scoring needs the 'pesq' package (pip install pesq)") from None
    return pesq


def _full_scale(*signals: npt.ArrayLike) -> float:
    """32768 for integer samples or floats past 1.0 (int16 scale), else 1.0."""
    arrays = [np.asarray(s) for s in signals]
    if any(np.issubdtype(a.dtype, np.integer) for a in arrays):
        return 32768.0
    return 32768.0 if any(a.size and np.abs(a).max() > 1.0 for a in arrays) else 1.0


def _check_scorable(ref: Signal, deg: Signal, full_scale: float) -> None:
    for name, sig in (("reference", ref), ("degraded", deg)):
        if sig.size == 0:
            raise ScoreError(f"{name} signal is empty")
    for name, sig in (("reference", ref), ("degraded", deg)):
        if np.sqrt(np.mean(np.square(sig))) < _SILENCE_RMS * full_scale:
            raise ScoreError(f"{name} signal is silent: nothing to score")


def _shift(deg: Signal, lag: int, length: int) -> Signal:
    out = np.zeros(length, dtype=np.float64)
    src_start = max(lag, 0)
    dst_start = max(-lag, 0)
    count = max(0, min(deg.size - src_start, length - dst_start))
    out[dst_start : dst_start + count] = deg[src_start : src_start + count]
    return out


def _signal(samples: npt.ArrayLike, name: str) -> Signal:
    data = np.asarray(samples)
    if data.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of samples, got shape {data.shape}")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer or float samples, got {data.dtype}")
    out = data.astype(np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} holds NaN or infinite samples")
    return out


def _check_rate(rate: int) -> None:
    if not isinstance(rate, int) or rate <= 0:
        raise ValueError(f"sample rate must be a positive integer, got {rate!r}")


def tone_db(
    pcm: npt.ArrayLike, freq: float, rate: int = SAMPLE_RATE, window_s: float = 0.5
) -> float:
    """The loudest ``window_s`` level of ``freq`` in ``pcm`` (dB of int16 units, single-bin
    DFT over half-overlapping windows)."""
    samples = np.asarray(pcm, dtype=np.float64).reshape(-1)
    size = int(window_s * rate)
    probe = np.exp(-2j * np.pi * freq * np.arange(size) / rate)
    best = 1e-9
    for start in range(0, samples.size - size + 1, size // 2):
        best = max(best, float(abs(np.dot(samples[start : start + size], probe))) / size)
    return float(20 * np.log10(best))


def longest_silence(pcm: npt.ArrayLike, frame: int = 960, threshold: float = 300.0) -> float:
    """Seconds of the longest run of near-silent frames (RMS under ``threshold`` int16
    units; 960 samples is 20 ms at 48 kHz) between the first and the last sound."""
    samples = np.asarray(pcm, dtype=np.float64).reshape(-1)
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    loud = np.sqrt((frames**2).mean(axis=1)) > threshold
    seconds = frame / SAMPLE_RATE
    if not loud.any():
        return len(frames) * seconds
    first, last = int(np.argmax(loud)), len(loud) - int(np.argmax(loud[::-1]))
    run = best = 0
    for sound in loud[first:last]:
        run = 0 if sound else run + 1
        best = max(best, run)
    return best * seconds
