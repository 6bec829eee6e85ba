"""RateController: each policy behaviour, driven by synthetic reports once a second."""

from __future__ import annotations

import itertools

import pytest

from hopline.media.ratecontrol import MediaSettings, RateConfig, RateController


def _feed(
    rc: RateController, loss: float, seconds: int, start: float, **kw: float
) -> list[MediaSettings]:
    return [rc.update(loss, start + i, **kw) for i in range(seconds)]


def test_starts_clean_at_start_bitrate() -> None:
    rc = RateController()
    assert rc.settings == MediaSettings(32_000, False, 0, 0)
    assert rc.update(0.0, 0.0) == MediaSettings(32_000, False, 0, 0)


def test_light_loss_turns_fec_on_and_keeps_24k() -> None:
    rc = RateController(RateConfig(start_bitrate=16_000))
    s = _feed(rc, 0.03, 4, 0.0)[-1]
    assert rc.level == 1
    assert s.fec and s.redundancy == 0
    assert s.packet_loss_perc >= 2  # no redundancy: Opus FEC covers all the loss
    assert s.bitrate >= 24_000  # FEC needs room


def test_heavy_loss_lowers_bitrate_and_adds_redundancy() -> None:
    rc = RateController(RateConfig(start_bitrate=64_000))
    settings = _feed(rc, 0.10, 4, 0.0)
    assert settings[0].bitrate <= 48_000  # lowered on the first lossy report
    final = settings[-1]
    assert rc.level == 2
    assert final.fec and final.redundancy == 2 and final.bitrate == 40_000
    # Random loss: two repeats leave ~0.1 % for FEC, so Opus is told 1 %.
    assert final.packet_loss_perc == 1


def test_very_heavy_loss_repeats_three_frames_at_32k() -> None:
    rc = RateController()
    final = _feed(rc, 0.30, 4, 0.0)[-1]
    assert rc.level == 3
    assert (final.fec, final.redundancy, final.bitrate) == (True, 3, 32_000)


def test_expected_loss_told_to_opus_is_what_redundancy_leaves() -> None:
    rc = RateController()
    _feed(rc, 0.10, 6, 0.0, burst=1.11)
    random_perc = rc.settings.packet_loss_perc
    rc = RateController()
    _feed(rc, 0.10, 6, 0.0, burst=3.0)
    bursty = rc.settings
    assert random_perc == 1
    # Four copies spread to 8 back: bursts of 3 outlast them (2/3)**8 of the
    # time, 10 % * 0.039 -> 0.4 %, told as 1 %.
    assert (bursty.redundancy, bursty.spread) == (4, True)
    assert bursty.packet_loss_perc == 1
    rc = RateController()
    _feed(rc, 0.03, 6, 0.0, burst=3.0)
    # Light loss: no copies, so FEC is told all of it.
    assert rc.settings.redundancy == 0 and rc.settings.packet_loss_perc == 3


def test_bursty_loss_gets_more_redundancy_than_random_loss() -> None:
    r = _feed(RateController(), 0.10, 5, 0.0, burst=1.1)[-1]
    b = _feed(RateController(), 0.10, 5, 0.0, burst=1.6)[-1]
    spread = _feed(RateController(), 0.10, 5, 0.0, burst=2.5)[-1]
    assert (r.redundancy, r.spread) == (2, False)
    assert (b.redundancy, b.spread) == (3, False)
    assert (spread.redundancy, spread.spread) == (4, True)
    assert _feed(RateController(), 0.3, 5, 0.0, burst=6.0)[-1].redundancy == 4


def test_single_spike_is_smoothed() -> None:
    rc = RateController()
    _feed(rc, 0.0, 5, 0.0)
    s = rc.update(0.10, 5.0)
    assert s.redundancy == 0  # one 10 % report does not reach the 5 % smoothed level
    assert rc.loss < 0.05


def test_hysteresis_does_not_flap_between_levels() -> None:
    rc = RateController()
    _feed(rc, 0.08, 4, 0.0)
    assert rc.level == 2
    seen = set()
    # Loss wobbling between 3 % and 6 %: around the 5 % threshold, above its exit.
    for i in range(40):
        s = rc.update(0.03 if i % 2 else 0.06, 4.0 + i)
        seen.add((s.fec, s.redundancy))
        assert rc.level == 2
    assert seen == {(True, 2)}


def test_bitrate_climbs_to_the_level_cap_under_stable_loss() -> None:
    rc = RateController()
    bitrates = [s.bitrate for s in _feed(rc, 0.10, 20, 0.0)]
    assert bitrates[0] == 32_000
    assert bitrates[-1] == 40_000  # the heavy-loss cap
    assert bitrates == sorted(bitrates)


def test_recovers_step_by_step_when_loss_clears() -> None:
    rc = RateController()
    _feed(rc, 0.3, 5, 0.0)
    assert rc.level == 3
    history = _feed(rc, 0.0, 60, 5.0)
    redundancy = [h.redundancy for h in history]
    assert redundancy[2] > 0  # not dropped at once
    assert redundancy == sorted(redundancy, reverse=True)
    assert history[-1] == MediaSettings(64_000, False, 0, 0)
    bitrates = [h.bitrate for h in history]
    assert bitrates == sorted(bitrates)  # only ever climbs back
    assert max(b2 - b1 for b1, b2 in itertools.pairwise(bitrates)) <= 4_000


def test_congestion_holds_the_bitrate() -> None:
    rc = RateController()
    assert _feed(rc, 0.0, 20, 0.0, jitter_ms=120.0)[-1].bitrate == 32_000
    assert _feed(RateController(), 0.0, 20, 0.0, rtt_ms=900.0)[-1].bitrate == 32_000
    assert _feed(RateController(), 0.0, 20, 0.0, rtt_ms=80.0)[-1].bitrate > 32_000


def test_bounds_hold_with_custom_config() -> None:
    rc = RateController(RateConfig(start_bitrate=20_000, min_bitrate=20_000, max_bitrate=28_000))
    for s in _feed(rc, 0.0, 30, 0.0) + _feed(rc, 0.5, 10, 30.0):
        assert 20_000 <= s.bitrate <= 28_000
        assert not s.fec or s.bitrate >= 24_000


@pytest.mark.parametrize("loss", [-0.1, 1.5, float("nan")])
def test_bad_loss_is_refused(loss: float) -> None:
    with pytest.raises(ValueError):
        RateController().update(loss, 0.0)


def test_bad_settings_and_config_are_refused() -> None:
    with pytest.raises(ValueError):
        MediaSettings(24_000, True, 10, 5)
    with pytest.raises(ValueError):
        RateConfig(min_bitrate=40_000, start_bitrate=32_000)


def test_spread_copies_have_hysteresis() -> None:
    rc = RateController()
    _feed(rc, 0.10, 6, 0.0, burst=3.0)
    assert rc.settings.spread
    _feed(rc, 0.10, 8, 6.0, burst=1.7)  # smoothed burst falls, but stays above 1.5
    assert 1.5 <= rc.burst < 2.0
    assert rc.settings.spread
    _feed(rc, 0.10, 10, 14.0, burst=1.1)
    assert not rc.settings.spread
    assert rc.settings.redundancy == 2
