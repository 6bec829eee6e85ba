"""Synthetic test speech for Hopline voice calls, spoken by espeak-ng.

Voice quality is judged with PESQ, which needs speech-like input: tones and
noise are not scored meaningfully. :func:`make_speech` runs the ``espeak-ng``
program (Debian's ``espeak-ng`` package) to a temporary WAV file and loads it
with :func:`hopline.media.audio.load_voice`, so the result is call audio:
48 kHz mono int16. espeak-ng is deterministic for a given text, voice and
rate, so results are cached in memory by that triple (the cache holds read-only
arrays; callers get a copy when they ask for a length).

``seconds`` trims the speech, or repeats it with a short pause between
repetitions, to exactly that length. :func:`write_speech` writes the same to a
WAV file for ``hopline call --play``. A missing or failing espeak-ng raises
:class:`SpeechUnavailable` with the reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

import numpy as np

from hopline.media.audio import SAMPLE_RATE, Pcm, load_voice, write_wav

__all__ = ["DEFAULT_TEXT", "SpeechUnavailable", "make_speech", "write_speech"]

DEFAULT_TEXT: Final = (
    "The quick brown fox jumps over the lazy dog. "
    "Please call me back when you reach the station this evening. "
    "We will meet at the corner near the old bakery at half past seven. "
    "If the train is late, send me a message and I will wait for you."
)
"""Natural sentences with a broad mix of voiced, unvoiced and plosive sounds."""

_PAUSE_SECONDS: Final = 0.3
_TIMEOUT_SECONDS: Final = 60.0
_MIN_WPM: Final = 80
_MAX_WPM: Final = 450


class SpeechUnavailable(RuntimeError):
    """espeak-ng is missing or failed to speak."""


def make_speech(
    text: str | None = None, seconds: float | None = None, *, voice: str = "en", rate_wpm: int = 150
) -> Pcm:
    """Speak ``text`` (default :data:`DEFAULT_TEXT`) as 48 kHz mono int16 samples.

    ``seconds`` trims the speech, or repeats it with a 0.3 s pause between
    repetitions, to exactly ``round(seconds * 48000)`` samples. Raises
    :class:`SpeechUnavailable` when espeak-ng is missing or fails, and
    :class:`ValueError` for empty text, a bad rate or a negative length.
    """
    spoken = _speak(DEFAULT_TEXT if text is None else text, voice, rate_wpm)
    if seconds is None:
        return spoken.copy()
    return _fit(spoken, seconds)


def write_speech(path: str | os.PathLike[str], seconds: float | None = None) -> None:
    """Write :func:`make_speech` of the default text to a 48 kHz 16-bit WAV file."""
    write_wav(path, make_speech(seconds=seconds))


def _fit(spoken: Pcm, seconds: float) -> Pcm:
    if not seconds >= 0 or np.isinf(seconds):
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds}")
    length = round(seconds * SAMPLE_RATE)
    pause = np.zeros(round(_PAUSE_SECONDS * SAMPLE_RATE), dtype=np.int16)
    period = np.concatenate([spoken, pause])
    repeats = -(-length // period.size)
    return np.tile(period, max(repeats, 1))[:length].copy()


@functools.lru_cache(maxsize=32)
def _speak(text: str, voice: str, rate_wpm: int) -> Pcm:
    if not text.strip():
        raise ValueError("make_speech: text is empty")
    if not _MIN_WPM <= rate_wpm <= _MAX_WPM:
        raise ValueError(f"make_speech: rate_wpm must be {_MIN_WPM}..{_MAX_WPM}, got {rate_wpm}")
    program = shutil.which("espeak-ng")
    if program is None:
        raise SpeechUnavailable(
            "espeak-ng is not installed (Debian package 'espeak-ng'); it makes the test speech"
        )
    with tempfile.TemporaryDirectory(prefix="hopline-speech-") as folder:
        out = Path(folder) / "speech.wav"
        _run(program, ["-v", voice, "-s", str(rate_wpm), "-w", str(out), "--", text])
        pcm = load_voice(out)
    if pcm.size == 0 or not pcm.any():
        raise SpeechUnavailable(f"espeak-ng produced no sound for voice {voice!r}")
    pcm.setflags(write=False)
    return pcm


def _run(program: str, args: list[str]) -> None:
    try:
        done = subprocess.run(  # noqa: S603 -- a fixed program, arguments are not a shell line
            [program, *args],
            capture_output=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpeechUnavailable(f"espeak-ng could not run: {exc}") from None
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        reason = detail[-1] if detail else f"exit status {done.returncode}"
        raise SpeechUnavailable(f"espeak-ng failed: {reason}")
