"""Rate adaptation for a voice stream: receiver reports in, encoder settings out.

:class:`RateController` is pure policy over plain data: no codec, no clock
of its own. The sending side feeds it every receiver report from the peer
(loss fraction, mean loss-burst length, jitter, round-trip time, and the
local ``now``) and applies the :class:`MediaSettings` it returns to the Opus
encoder (bitrate, in-band FEC, expected loss) and to the packetizer
(how many past frames each packet repeats).

Policy (tuned on espeak-ng speech through real Opus, scored with PESQ; see
``tests/media/test_voice_quality.py``):

* **Smoothing.** The loss fraction is smoothed with an EWMA that follows a
  rise quickly (``alpha_up``) and a fall slowly (``alpha_down``); the mean
  burst length is smoothed the same way, from reports that saw loss.
* **Protection levels with hysteresis.** The smoothed loss picks a level:
  0 clean (no FEC, no redundancy), 1 light, from 2 % (FEC), 2 heavy, from
  5 % (FEC and two repeated past frames), 3 very heavy, from 20 % (FEC and
  three). A level is entered as soon as the smoothed loss crosses its
  threshold, but left only after the loss has stayed below *half* that
  threshold for ``hold_s``, and then one level at a time, so a noisy loss
  estimate does not flap the settings.
* **Redundancy first, then FEC.** Repeating whole past frames is what keeps
  speech intact under heavy loss: at 10 % random loss two repeats bring the
  residual loss near 0.1 %, while Opus in-band FEC alone leaves a
  low-quality copy of every lost frame. FEC is not free either: the
  encoder pays for it from the same bitrate (at 24-32 kbit/s and 10-15 %
  expected loss it narrows the audio band, measured 0.5-1 PESQ worse on a
  clean path). So the encoder is told the loss expected *after*
  redundancy, ``loss * (1 - 1/burst) ** reach`` (loss bursts taken as
  geometric with the smoothed mean length; ``reach`` is how far back the
  oldest copy goes), at least 1 %: FEC then covers
  what the repeats miss and costs little when they miss nothing.
* **Redundancy for bursts.** At levels 2 and 3 each packet carries one more
  past frame per packet of mean burst length above one (rounded), up to
  four, since a burst of ``b`` lost packets is only bridged by ``b``
  repeated frames. From a mean burst of two (``spread_burst``) the four
  copies are spread out, 1, 2, 4 and 8 frames back (until the mean burst
  falls below three quarters of that, so it does not flap), which bridges bursts
  up to eight packets: at 10 % loss in bursts of mean 3 that lifted PESQ
  from about 1.9 to about 3, at the price of a 180 ms jitter-buffer floor
  at the receiver (it waits for the oldest copy).
* **Bitrate.** Each level caps the bitrate (``level_caps``: 48, 40 and 32
  kbit/s): rising loss lowers it at once, as every repeated frame
  multiplies what is sent. With FEC on it never goes below
  ``fec_min_bitrate`` (24 kbit/s): below that Opus has too few bits to
  spend on FEC. After ``hold_s`` of stable reports (the level did not rise,
  no single report above the level's range, no sign of congestion: high
  jitter or round-trip time) it steps up by ``step_up`` per report towards
  the level's cap (``max_bitrate`` at level 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hopline.media.packet import SPREAD_OFFSETS

__all__ = ["MediaSettings", "RateConfig", "RateController"]

MAX_REDUNDANCY = 4


@dataclass(frozen=True, slots=True)
class MediaSettings:
    """What the sender applies: Opus bitrate, FEC and expected loss, packet redundancy.

    ``redundancy`` past frames are repeated in each packet: the last ones, or
    with ``spread`` the frames 1, 2, 4 and 8 back (for bursty loss).
    """

    bitrate: int
    fec: bool
    packet_loss_perc: int
    redundancy: int
    spread: bool = False

    def __post_init__(self) -> None:
        """Refuse values the encoder or packetizer would not take."""
        if not 6000 <= self.bitrate <= 510_000:
            raise ValueError(f"bitrate {self.bitrate} outside 6000-510000")
        if not 0 <= self.packet_loss_perc <= 100:
            raise ValueError(f"packet_loss_perc {self.packet_loss_perc} outside 0-100")
        if not 0 <= self.redundancy <= MAX_REDUNDANCY:
            raise ValueError(f"redundancy {self.redundancy} outside 0-{MAX_REDUNDANCY}")


@dataclass(frozen=True, slots=True)
class RateConfig:
    """The controller's tunables; the defaults are Hopline's voice policy."""

    start_bitrate: int = 32_000
    min_bitrate: int = 16_000
    max_bitrate: int = 64_000
    fec_min_bitrate: int = 24_000
    level_thresholds: tuple[float, float, float] = (0.02, 0.05, 0.2)
    """Smoothed loss that enters levels 1, 2 and 3."""
    level_caps: tuple[int, int, int] = (48_000, 40_000, 32_000)
    """Highest bitrate at levels 1, 2 and 3."""
    base_redundancy: tuple[int, int, int] = (0, 2, 3)
    """Past frames repeated at levels 1, 2 and 3 for random loss."""
    spread_burst: float = 2.0
    """Smoothed mean burst from which heavy loss gets four spread-out copies."""
    exit_ratio: float = 0.5
    hold_s: float = 5.0
    alpha_up: float = 0.35
    alpha_down: float = 0.2
    step_up: int = 4_000
    congested_jitter_ms: float = 60.0
    congested_rtt_ms: float = 600.0

    def __post_init__(self) -> None:
        """Refuse inconsistent bounds."""
        if not 6000 <= self.min_bitrate <= self.start_bitrate <= self.max_bitrate:
            raise ValueError("need 6000 <= min_bitrate <= start_bitrate <= max_bitrate")
        if list(self.level_thresholds) != sorted(self.level_thresholds):
            raise ValueError("level_thresholds must increase")
        if not (0 < self.alpha_up <= 1 and 0 < self.alpha_down <= 1):
            raise ValueError("alphas must be in (0, 1]")


class RateController:
    """Turns the peer's receiver reports into :class:`MediaSettings` (see the module docs)."""

    def __init__(self, config: RateConfig | None = None) -> None:
        """Start clean at ``config.start_bitrate``."""
        self.config = config or RateConfig()
        self.loss = 0.0
        """Smoothed loss fraction."""
        self.burst = 1.0
        """Smoothed mean loss-burst length."""
        self.level = 0
        self._bitrate = self.config.start_bitrate
        self._calm_since: float | None = None
        self._stable_since: float | None = None
        self._spread = False
        self.settings = self._settings()

    def update(
        self,
        loss: float,
        now: float,
        *,
        jitter_ms: float = 0.0,
        rtt_ms: float | None = None,
        burst: float = 0.0,
    ) -> MediaSettings:
        """Take one report (loss fraction, mean burst, jitter, RTT) at ``now``; new settings."""
        if not 0.0 <= loss <= 1.0:
            raise ValueError(f"loss must be in [0, 1], not {loss!r}")
        growing = self._level_for(loss) > self.level
        self._smooth(loss, burst)
        rose = self._update_level(now)
        self._update_spread()
        unstable = growing or rose or self._congested(jitter_ms, rtt_ms)
        self._update_bitrate(now, unstable=unstable)
        self.settings = self._settings()
        return self.settings

    def _smooth(self, loss: float, burst: float) -> None:
        cfg = self.config
        alpha = cfg.alpha_up if loss > self.loss else cfg.alpha_down
        self.loss += alpha * (loss - self.loss)
        if loss > 0 and burst >= 1.0:
            alpha = cfg.alpha_up if burst > self.burst else cfg.alpha_down
            self.burst += alpha * (burst - self.burst)

    def _level_for(self, loss: float, scale: float = 1.0) -> int:
        return sum(loss >= t * scale for t in self.config.level_thresholds)

    def _update_level(self, now: float) -> bool:
        """Move between levels; whether the level rose."""
        entered = self._level_for(self.loss)
        if entered > self.level:
            self.level = entered
            self._calm_since = None
            return True
        if self._level_for(self.loss, self.config.exit_ratio) >= self.level:
            self._calm_since = None
        elif self._calm_since is None:
            self._calm_since = now
        elif now - self._calm_since >= self.config.hold_s:
            self.level -= 1
            self._calm_since = now
        return False

    def _update_spread(self) -> None:
        """Spread copies from ``spread_burst`` on; back to plain ones below 3/4 of it."""
        if self.level < 2:
            self._spread = False
        elif self.burst >= self.config.spread_burst:
            self._spread = True
        elif self.burst < 0.75 * self.config.spread_burst:
            self._spread = False

    def _congested(self, jitter_ms: float, rtt_ms: float | None) -> bool:
        cfg = self.config
        slow = rtt_ms is not None and rtt_ms > cfg.congested_rtt_ms
        return slow or jitter_ms > cfg.congested_jitter_ms

    def _cap(self) -> int:
        cfg = self.config
        return cfg.level_caps[self.level - 1] if self.level else cfg.max_bitrate

    def _update_bitrate(self, now: float, *, unstable: bool) -> None:
        cfg = self.config
        self._bitrate = min(self._bitrate, self._cap())
        if unstable:
            self._stable_since = None
        elif self._stable_since is None:
            self._stable_since = now
        elif now - self._stable_since >= cfg.hold_s:
            self._bitrate = min(self._cap(), self._bitrate + cfg.step_up)

    def _redundancy(self) -> tuple[int, bool]:
        """How many past frames to repeat, and whether spread out (1, 2, 4, 8 back)."""
        if self.level == 0:
            return 0, False
        base = self.config.base_redundancy[self.level - 1]
        if base == 0:
            return 0, False
        if self._spread:
            return MAX_REDUNDANCY, True
        extra = max(0, round(self.burst - 1.0))
        return min(MAX_REDUNDANCY, base + extra), False

    def _settings(self) -> MediaSettings:
        cfg = self.config
        fec = self.level > 0
        floor = max(cfg.min_bitrate, cfg.fec_min_bitrate if fec else 0)
        bitrate = max(floor, min(cfg.max_bitrate, self._bitrate))
        redundancy, spread = self._redundancy()
        reach = SPREAD_OFFSETS[redundancy - 1] if spread else redundancy
        perc = max(1, min(100, math.ceil(100 * self._residual(reach)))) if fec else 0
        return MediaSettings(bitrate, fec, perc, redundancy, spread)

    def _residual(self, reach: int) -> float:
        """Expected loss of frames that repeated copies do not bring back.

        ``reach`` is how far back the oldest copy goes. Loss bursts are taken
        as geometric with the smoothed mean length ``b``: a lost frame stays
        lost when the burst goes on for ``reach`` more packets, with
        probability ``(1 - 1/b) ** reach``.
        """
        return self.loss * (1.0 - 1.0 / max(1.0, self.burst)) ** reach
