"""The E-model MOS estimate: reference points, monotonicity, range checks."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopline.media.quality import (
    BASELINE_R,
    CodecImpairment,
    QualityInputError,
    delay_impairment,
    effective_equipment_impairment,
    estimate_mos,
    mos_from_r,
    opus_impairment,
    r_factor,
)

TRANSPARENT = CodecImpairment(ie=0.0, bpl=10.0)


def test_reference_connection_rates_93_2_and_mos_4_41() -> None:
    r = r_factor(0.0, 0.0, 0.0, codec_delay_ms=0.0, codec=TRANSPARENT)
    assert r == pytest.approx(93.2, abs=0.05)
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.01)
    assert estimate_mos(0.0, 0.0, 0.0, codec_delay_ms=0.0, codec=TRANSPARENT) == pytest.approx(
        4.41, abs=0.01
    )
    assert pytest.approx(93.36) == BASELINE_R


@pytest.mark.parametrize(
    ("r", "mos"), [(-5.0, 1.0), (0.0, 1.0), (50.0, 2.58), (70.0, 3.60), (80.0, 4.02), (120, 4.5)]
)
def test_r_to_mos_mapping(r: float, mos: float) -> None:
    assert mos_from_r(r) == pytest.approx(mos, abs=0.01)


def test_delay_impairment_follows_g107() -> None:
    assert delay_impairment(0.0) == 0.0
    assert delay_impairment(100.0) == 0.0
    assert delay_impairment(200.0) == pytest.approx(3.05, abs=0.02)
    assert delay_impairment(400.0) == pytest.approx(24.1, abs=0.1)


def test_effective_equipment_impairment() -> None:
    codec = CodecImpairment(ie=5.0, bpl=10.0)
    assert effective_equipment_impairment(0.0, codec=codec) == 5.0
    # 10 % random loss: 5 + 90 * 10 / (10 + 10)
    assert effective_equipment_impairment(0.1, codec=codec) == pytest.approx(50.0)
    bursty = effective_equipment_impairment(0.1, burst_ratio=2.0, codec=codec)
    assert bursty > 50.0
    assert effective_equipment_impairment(1.0, codec=codec) < 95.0


def test_opus_parameters() -> None:
    assert opus_impairment(64_000).ie == 0.0
    assert opus_impairment(24_000).ie < opus_impairment(12_000).ie < opus_impairment(6_000).ie
    assert opus_impairment(fec=True).bpl > opus_impairment(fec=False).bpl


def test_delay_under_150_ms_costs_little() -> None:
    best = estimate_mos(0.0, 0.0, 0.0)
    # 150 ms one way with the default Opus delay: RTT 2 * (150 - 26.5 - 10), jitter 5 ms
    assert best - estimate_mos(227.0, 5.0, 0.0) < 0.1
    assert best - estimate_mos(600.0, 20.0, 0.0) > 0.3


def test_heavy_loss_is_poor() -> None:
    assert estimate_mos(40.0, 5.0, 0.15, codec=opus_impairment(fec=False)) < 3.0
    assert estimate_mos(40.0, 5.0, 0.30) < 3.0
    assert estimate_mos(40.0, 5.0, 0.10, codec=opus_impairment(fec=False)) < estimate_mos(
        40.0, 5.0, 0.10, codec=opus_impairment(fec=True)
    )


def test_jitter_buffer_delay_counts() -> None:
    assert estimate_mos(100.0, 10.0, 0.0, jitter_buffer_ms=250.0) < estimate_mos(100.0, 10.0, 0.0)


@given(
    rtt=st.floats(0.0, 2000.0),
    jitter=st.floats(0.0, 200.0),
    loss=st.floats(0.0, 0.99),
    more=st.floats(0.001, 0.5),
)
def test_mos_decreases_in_loss_and_delay(
    rtt: float, jitter: float, loss: float, more: float
) -> None:
    base = estimate_mos(rtt, jitter, loss)
    assert 1.0 <= base <= 4.5
    assert estimate_mos(rtt, jitter, min(1.0, loss + more)) <= base
    assert estimate_mos(rtt + more * 1000.0, jitter, loss) <= base
    assert estimate_mos(rtt, jitter, loss, burst_ratio=3.0) <= base


def test_strict_decrease_in_the_useful_range() -> None:
    losses = [estimate_mos(50.0, 5.0, p / 100) for p in range(20)]
    assert all(a > b for a, b in itertools.pairwise(losses))
    delays = [estimate_mos(float(rtt), 5.0, 0.01) for rtt in range(200, 1200, 50)]
    assert all(a > b for a, b in itertools.pairwise(delays))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rtt_ms": -1.0},
        {"jitter_ms": math.nan},
        {"loss": 1.5},
        {"loss": -0.1},
        {"burst_ratio": 0.0},
        {"jitter_buffer_ms": -5.0},
        {"codec_delay_ms": math.inf},
    ],
)
def test_bad_inputs_raise_a_typed_error(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"rtt_ms": 50.0, "jitter_ms": 5.0, "loss": 0.01, **kwargs}
    with pytest.raises(QualityInputError):
        estimate_mos(**args)
    with pytest.raises(QualityInputError):
        mos_from_r(math.nan)


def test_docs_quality_table_matches_the_model() -> None:
    """The example table in docs/calls.md is what the model computes."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "calls.md").read_text()
    section = text.split("## Call quality estimate", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| ") and " ms |" in line]
    assert len(rows) >= 5
    for row in rows:
        rtt, jitter, loss, fec, plc = (cell.split()[0] for cell in row.strip("| ").split(" | "))
        args = (float(rtt), float(jitter), float(loss) / 100)
        assert f"{estimate_mos(*args):.2f}" == fec, row
        assert f"{estimate_mos(*args, codec=opus_impairment(fec=False)):.2f}" == plc, row
