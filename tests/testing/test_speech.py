"""Test speech from espeak-ng: format, length fitting, caching and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hopline.media.audio import read_wav
from hopline.testing import speech as speech_module
from hopline.testing.speech import SpeechUnavailable, make_speech, write_speech

RATE = 48000

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")


@needs_espeak
def test_default_speech_is_call_audio() -> None:
    pcm = make_speech()
    assert pcm.dtype == np.int16
    assert pcm.ndim == 1
    assert 8 * RATE < pcm.size < 30 * RATE
    assert 8000 < np.abs(pcm).max() < 32767
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    hz = np.fft.rfftfreq(pcm.size, 1 / RATE)
    voice_band = spectrum[(hz >= 80) & (hz <= 4000)].sum()
    assert voice_band > 0.8 * spectrum.sum()


@needs_espeak
def test_speech_has_pauses_between_words() -> None:
    pcm = make_speech().astype(np.float64)
    frames = pcm[: pcm.size // 960 * 960].reshape(-1, 960)
    rms = np.sqrt((frames**2).mean(axis=1))
    quiet = rms < 0.01 * rms.max()
    assert 0.05 < quiet.mean() < 0.6


@needs_espeak
@pytest.mark.parametrize("seconds", [0.0, 0.5, 3.0])
def test_seconds_trims(seconds: float) -> None:
    full = make_speech()
    pcm = make_speech(seconds=seconds)
    assert pcm.size == round(seconds * RATE)
    np.testing.assert_array_equal(pcm, full[: pcm.size])


@needs_espeak
def test_seconds_loops_with_a_pause() -> None:
    full = make_speech("Hello there.")
    pcm = make_speech("Hello there.", seconds=3 * full.size / RATE)
    assert pcm.size == round(3 * full.size)
    np.testing.assert_array_equal(pcm[: full.size], full)
    pause = round(0.3 * RATE)
    assert not pcm[full.size : full.size + pause].any()
    np.testing.assert_array_equal(pcm[full.size + pause : 2 * full.size + pause], full)


@needs_espeak
def test_text_and_rate_change_the_result() -> None:
    slow = make_speech("Testing one two three.", rate_wpm=120)
    fast = make_speech("Testing one two three.", rate_wpm=300)
    other = make_speech("Something else entirely.", rate_wpm=120)
    assert fast.size < 0.7 * slow.size
    assert other.size != slow.size or not np.array_equal(other, slow)


@needs_espeak
def test_results_are_cached_and_copies_are_private() -> None:
    text = "Caching is checked with this sentence."
    first = make_speech(text)
    hits = speech_module._speak.cache_info().hits
    first[:] = 0
    second = make_speech(text)
    assert speech_module._speak.cache_info().hits == hits + 1
    assert second.any()


@needs_espeak
def test_write_speech(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    write_speech(path, seconds=2.0)
    pcm, rate = read_wav(path)
    assert rate == RATE
    np.testing.assert_array_equal(pcm, make_speech(seconds=2.0))


@needs_espeak
def test_unknown_voice_is_speech_unavailable() -> None:
    with pytest.raises(SpeechUnavailable, match=r"espeak-ng failed: .*voice does not exist"):
        make_speech("Hello.", voice="zz")


def test_missing_espeak_is_speech_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(SpeechUnavailable, match="espeak-ng is not installed"):
        make_speech("Only said when espeak-ng is missing.")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"text": "  "}, "text is empty"),
        ({"text": "Hi.", "rate_wpm": 5}, "rate_wpm"),
        ({"text": "Hi.", "rate_wpm": 10_000}, "rate_wpm"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_speech(**kwargs)


@needs_espeak
def test_negative_seconds() -> None:
    with pytest.raises(ValueError, match="seconds"):
        make_speech(seconds=-1.0)
