"""An estimated MOS for a live call: the ITU-T G.107 E-model, simplified for VoIP.

This is an **estimate**, computed from network statistics alone; it is what the
live call statistics show next to RTT, loss and jitter. Measured quality (PESQ
against the clean source) lives in the benchmarks, not here.

The model, on the narrowband R scale (0..100):

    R = Ro - Is - Id - Ie_eff + A

* ``Ro - Is`` is the G.107 default baseline with every non-network parameter
  at its default value: 94.77 - 1.41 = 93.36; with the default delay terms the
  standard's reference connection rates R = 93.2.
* ``Id`` is the delay impairment from the one-way mouth-to-ear delay ``Ta``:
  the G.107 pure-delay term ``Idd`` (zero up to 100 ms, then growing), plus a
  small constant 0.15 for the default talker/listener echo terms (echo
  cancellation assumed), so that the reference connection gives 93.2.
  ``Ta = rtt / 2 + jitter buffer delay + codec delay``.
* ``Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)`` with ``Ppl`` the
  packet loss in percent and ``BurstR`` the burst ratio (1 for random loss).
* ``A`` is the advantage factor (0 for ordinary calls).

R maps to MOS by ``1 + 0.035 R + R (R - 60) (100 - R) 7e-6``, clamped to
1..4.5.

Codec parameters for Opus (``Ie``, ``Bpl``): G.113 lists no values for Opus,
so these are Hopline's own choices, in the range commonly used for modern
wideband codecs on the narrowband scale (``Ie`` 0..11, ``Bpl`` 10..20):
``Ie`` falls from 11 at 8 kbit/s to 0 at 32 kbit/s and above (see
:func:`opus_impairment`), ``Bpl`` is 10 with loss concealment only and 20 with
in-band FEC. With 10 % random loss these give MOS ≈ 2.3 and ≈ 3.1; the
wideband PESQ measured on this codec with the same loss is lower (≈ 1.4 and
≈ 2.4), so read the estimate as a trend, not as a score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "BASELINE_R",
    "OPUS_CODEC_DELAY_MS",
    "CodecImpairment",
    "QualityInputError",
    "delay_impairment",
    "effective_equipment_impairment",
    "estimate_mos",
    "mos_from_r",
    "opus_impairment",
    "r_factor",
]

BASELINE_R = 94.77 - 1.41
"""``Ro - Is`` with G.107 default parameters."""

_DEFAULT_ECHO_IMPAIRMENT = 0.15
"""``Idte + Idle`` at G.107 defaults (echo cancelled); makes the reference R 93.2."""

_DELAY_KNEE_MS = 100.0
"""``mT`` in G.107: one-way delay below which ``Idd`` is zero."""

OPUS_CODEC_DELAY_MS = 26.5
"""One 20 ms frame plus Opus's 6.5 ms look-ahead."""


class QualityInputError(ValueError):
    """A statistic given to the model is out of range (negative, NaN, loss > 1)."""


@dataclass(frozen=True, slots=True)
class CodecImpairment:
    """E-model codec parameters: equipment impairment ``ie`` and robustness ``bpl``."""

    ie: float
    bpl: float


_OPUS_IE_BY_BITRATE: tuple[tuple[int, float], ...] = (
    (32_000, 0.0),
    (24_000, 2.0),
    (16_000, 5.0),
    (12_000, 8.0),
    (0, 11.0),
)


def opus_impairment(bitrate_bps: int = 24_000, fec: bool = True) -> CodecImpairment:
    """Return Hopline's estimated E-model parameters for wideband Opus.

    Not from a standard (G.113 has no Opus entry); see the module header.
    """
    ie = next(value for floor, value in _OPUS_IE_BY_BITRATE if bitrate_bps >= floor)
    return CodecImpairment(ie=ie, bpl=20.0 if fec else 10.0)


def _check(name: str, value: float, low: float = 0.0, high: float = math.inf) -> None:
    """Raise :class:`QualityInputError` unless ``low <= value <= high``."""
    if not low <= value <= high:  # also false for NaN
        raise QualityInputError(f"{name} must be in [{low}, {high}], got {value!r}")


def delay_impairment(one_way_ms: float) -> float:
    """Return ``Idd`` (G.107) for a one-way mouth-to-ear delay in milliseconds."""
    _check("one_way_ms", one_way_ms)
    if one_way_ms <= _DELAY_KNEE_MS:
        return 0.0
    x = math.log2(one_way_ms / _DELAY_KNEE_MS)
    sixth = 1.0 / 6.0
    return 25.0 * (math.pow(1 + x**6, sixth) - 3 * math.pow(1 + (x / 3) ** 6, sixth) + 2)


def effective_equipment_impairment(
    loss: float, burst_ratio: float = 1.0, codec: CodecImpairment | None = None
) -> float:
    """Return ``Ie_eff`` for a loss fraction (0..1) and burst ratio."""
    _check("loss", loss, high=1.0)
    _check("burst_ratio", burst_ratio, low=1e-9)
    codec = codec or opus_impairment()
    ppl = loss * 100.0
    return codec.ie + (95.0 - codec.ie) * ppl / (ppl / burst_ratio + codec.bpl)


def r_factor(
    rtt_ms: float,
    jitter_ms: float,
    loss: float,
    burst_ratio: float = 1.0,
    jitter_buffer_ms: float | None = None,
    codec_delay_ms: float = OPUS_CODEC_DELAY_MS,
    codec: CodecImpairment | None = None,
    advantage: float = 0.0,
) -> float:
    """Return the transmission rating R (about 0..93.4) for the given network state.

    ``jitter_buffer_ms`` is the jitter buffer's current delay; when not known
    it is taken as twice the jitter (an adaptive buffer holds about that much).
    """
    for name, value in (("rtt_ms", rtt_ms), ("jitter_ms", jitter_ms)):
        _check(name, value)
    _check("codec_delay_ms", codec_delay_ms)
    _check("advantage", advantage, high=20.0)
    buffer_ms = 2.0 * jitter_ms if jitter_buffer_ms is None else jitter_buffer_ms
    _check("jitter_buffer_ms", buffer_ms)
    one_way = rtt_ms / 2.0 + buffer_ms + codec_delay_ms
    idelay = delay_impairment(one_way) + _DEFAULT_ECHO_IMPAIRMENT
    ie_eff = effective_equipment_impairment(loss, burst_ratio, codec)
    return BASELINE_R - idelay - ie_eff + advantage


def mos_from_r(r: float) -> float:
    """Map R to MOS (G.107 Annex B), clamped to 1..4.5."""
    if math.isnan(r):
        raise QualityInputError("R is NaN")
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    mos = 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6
    return min(4.5, max(1.0, mos))


def estimate_mos(
    rtt_ms: float,
    jitter_ms: float,
    loss: float,
    burst_ratio: float = 1.0,
    jitter_buffer_ms: float | None = None,
    codec_delay_ms: float = OPUS_CODEC_DELAY_MS,
    codec: CodecImpairment | None = None,
) -> float:
    """Return the estimated MOS (1..4.5) for a call with these live statistics."""
    return mos_from_r(
        r_factor(rtt_ms, jitter_ms, loss, burst_ratio, jitter_buffer_ms, codec_delay_ms, codec)
    )
