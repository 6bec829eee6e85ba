"""Alignment and wideband PESQ on real speech (espeak-ng) and real Opus.

The calibration points come from the machine facts: clean speech against
itself scores 4.64; through Opus at 24 kbit/s (complexity 10) about 3.73.
The reference ends in espeak-ng's own trailing silence, so a delayed copy
loses nothing but silence when it is trimmed back to the reference length.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt
import pytest

from hopline.media.opus import OpusDecoder, OpusEncoder, opus_available
from hopline.media.score import (
    ScoreError,
    align,
    delay_ms,
    find_lag,
    longest_silence,
    pesq_wb,
    tone_db,
)
from hopline.testing.speech import SpeechUnavailable, make_speech

Pcm = npt.NDArray[np.int16]
RATE = 48000
FRAME = 960

pytest.importorskip("pesq")


@pytest.fixture(scope="module")
def speech() -> Pcm:
    try:
        pcm: Pcm = make_speech()
    except SpeechUnavailable as exc:
        pytest.skip(str(exc))
    return pcm


def delayed(signal: Pcm, ms: float) -> Pcm:
    """The signal behind ``ms`` milliseconds of silence (not trimmed)."""
    return np.concatenate([np.zeros(round(ms * RATE / 1000), dtype=np.int16), signal])


def through_opus(signal: Pcm, bitrate: int = 24000) -> Pcm:
    encoder = OpusEncoder(bitrate=bitrate, complexity=10)
    decoder = OpusDecoder()
    usable = signal.size // FRAME * FRAME
    frames = [
        decoder.decode(encoder.encode(signal[i : i + FRAME])) for i in range(0, usable, FRAME)
    ]
    return np.concatenate(frames)


# ---------------------------------------------------------------- alignment


@pytest.mark.parametrize("lag", [0, 1, 37, 1440, -500, 47000, -47000])
def test_find_lag_recovers_a_shift(lag: int) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(0, 3000, 3 * RATE).astype(np.int16)
    reference = base[RATE : 2 * RATE]
    degraded = base[RATE - lag : 2 * RATE - lag]  # degraded[i] == reference[i - lag]
    assert find_lag(reference, degraded, RATE) == lag


def test_find_lag_searches_only_one_second() -> None:
    rng = np.random.default_rng(4)
    reference = rng.normal(0, 3000, 3 * RATE)
    shifted = np.roll(reference, round(1.5 * RATE))
    assert abs(find_lag(reference, shifted, RATE)) <= RATE


def test_align_shifts_and_trims_to_the_reference(speech: Pcm) -> None:
    degraded = delayed(speech, 30)
    out = align(speech, degraded, RATE)
    assert out.shape == speech.shape
    np.testing.assert_array_equal(out, speech.astype(np.float64))


def test_align_pads_an_early_short_signal() -> None:
    rng = np.random.default_rng(5)
    reference = rng.normal(0, 3000, RATE)
    early = reference[100 : RATE // 2]  # starts 100 samples in, half as long
    out = align(reference, early, RATE)
    assert out.size == reference.size
    np.testing.assert_array_equal(out[100 : RATE // 2], early)
    assert not out[:100].any()
    assert not out[RATE // 2 :].any()


def test_delay_ms_reports_the_lag(speech: Pcm) -> None:
    assert delay_ms(speech, delayed(speech, 30), RATE) == pytest.approx(30.0)
    assert delay_ms(speech, speech, RATE) == 0.0


@pytest.mark.parametrize(
    ("reference", "degraded", "match"),
    [
        (np.zeros((10, 2)), np.zeros(10), "reference must be a 1-D"),
        (np.zeros(10), np.array(["a"]), "degraded must hold integer or float"),
        (np.array([0.0, np.nan]), np.zeros(2), "NaN"),
    ],
)
def test_bad_arrays_are_value_errors(
    reference: npt.NDArray[np.generic], degraded: npt.NDArray[np.generic], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        align(reference, degraded, RATE)


def test_bad_rate_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        find_lag(np.ones(10), np.ones(10), 0)


# ---------------------------------------------------------------- PESQ


def test_speech_against_itself(speech: Pcm) -> None:
    assert pesq_wb(speech, speech) == pytest.approx(4.64, abs=0.05)


def test_delayed_copy_scores_the_same_after_alignment(speech: Pcm) -> None:
    assert pesq_wb(speech, delayed(speech, 30)) == pytest.approx(4.64, abs=0.05)


def test_noise_scores_low(speech: Pcm) -> None:
    rng = np.random.default_rng(6)
    noise = rng.normal(0, 3000, speech.size).astype(np.int16)
    assert pesq_wb(speech, noise) < 1.5


def test_more_noise_scores_lower(speech: Pcm) -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 1, speech.size)
    light = pesq_wb(speech, speech + 100 * noise)
    heavy = pesq_wb(speech, speech + 600 * noise)
    assert 4.0 > light > heavy + 0.5
    assert heavy > 1.0


@pytest.mark.skipif(opus_available() is not None, reason=f"libopus: {opus_available()}")
def test_opus_24k_round_trip(speech: Pcm) -> None:
    decoded = through_opus(speech)
    assert 5.0 <= delay_ms(speech, decoded, RATE) <= 8.0  # the encoder's lookahead
    assert 3.3 <= pesq_wb(speech, decoded) <= 4.2


@pytest.mark.skipif(opus_available() is not None, reason=f"libopus: {opus_available()}")
def test_lower_bitrate_scores_lower(speech: Pcm) -> None:
    assert pesq_wb(speech, through_opus(speech, 8000)) < pesq_wb(speech, through_opus(speech))


def test_other_rates_are_resampled(speech: Pcm) -> None:
    at_16k = speech[::3]  # the espeak-ng voice has nothing above 8 kHz worth aliasing
    assert pesq_wb(at_16k, at_16k, rate=16000) == pytest.approx(4.64, abs=0.05)


@pytest.mark.parametrize(
    ("reference", "degraded", "match"),
    [
        (np.zeros(RATE, dtype=np.int16), np.ones(RATE, dtype=np.int16), "reference signal is"),
        (None, np.ones(RATE, dtype=np.int16), "degraded signal is silent"),  # -90 dBFS
        (None, np.full(RATE, 1e-5), "degraded signal is silent"),
        (None, np.zeros(RATE, dtype=np.int16), "degraded signal is silent"),
        (None, np.zeros(0, dtype=np.int16), "degraded signal is empty"),
        (np.zeros(0, dtype=np.int16), np.ones(RATE, dtype=np.int16), "reference signal is empty"),
    ],
)
def test_unscorable_signals(speech: Pcm, reference: Pcm | None, degraded: Pcm, match: str) -> None:
    with pytest.raises(ScoreError, match=match):
        pesq_wb(speech[:RATE] if reference is None else reference, degraded)


def test_pesq_refusal_is_translated(speech: Pcm) -> None:
    short = speech[RATE : RATE + RATE // 5]  # 0.2 s: PESQ needs a quarter of a second
    with pytest.raises(ScoreError, match="too short to score: Buffer needs to be at least"):
        pesq_wb(short, short)


def test_missing_pesq_package(monkeypatch: pytest.MonkeyPatch, speech: Pcm) -> None:
    monkeypatch.setitem(sys.modules, "pesq", None)
    with pytest.raises(ScoreError, match="pip install pesq"):
        pesq_wb(speech, speech)


def test_float_signals_in_unit_scale(speech: Pcm) -> None:
    unit = speech / 32768.0
    assert pesq_wb(unit, unit) == pytest.approx(4.64, abs=0.05)
    with pytest.raises(ScoreError, match="degraded signal is silent"):
        pesq_wb(unit, np.full(speech.size, 1e-5))


def test_tone_db_finds_the_level_of_one_frequency_only() -> None:
    t = np.arange(48000) / 48000
    pcm = (1000 * np.sin(2 * np.pi * 440 * t) + 10 * np.sin(2 * np.pi * 1030 * t)).astype(np.int16)
    # a sine of amplitude A shows as A/2 in the single-bin DFT: 500 -> 54 dB, 5 -> 14 dB
    assert abs(tone_db(pcm, 440.0) - 20 * np.log10(500)) < 0.5
    assert abs(tone_db(pcm, 1030.0) - 20 * np.log10(5)) < 1.0
    assert tone_db(pcm, 810.0) < 10.0


def test_longest_silence_is_the_widest_gap_between_sounds() -> None:
    loud = np.full(960, 3000, dtype=np.int16)
    quiet = np.zeros(960, dtype=np.int16)
    frames = [quiet] * 10 + [loud] * 5 + [quiet] * 7 + [loud] + [quiet] * 3 + [loud] + [quiet] * 50
    assert longest_silence(np.concatenate(frames)) == pytest.approx(7 * 0.02)
    assert longest_silence(np.zeros(9600, dtype=np.int16)) == pytest.approx(10 * 0.02)
