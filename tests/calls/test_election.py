"""Host election: eligibility, the score, determinism, and the CPU calibration."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.calls.election import (
    DEFAULT_POLICY,
    Capacity,
    CpuHeadroom,
    PathQuality,
    elect_host,
    measure_cpu_headroom,
    mix_load_permille,
    rank_hosts,
    required_upload_bps,
)
from hopline.nat.discovery import NatType

NAMES = ("ann", "ben", "cat", "dan", "eve")


def peer(user: str, nat: NatType = NatType.FULL_CONE, upload: int = 10_000_000) -> Capacity:
    """A capable participant with a 40 ms, 1 % path to everyone in NAMES."""
    paths = tuple(PathQuality(p, 40, 10) for p in NAMES if p != user)
    return Capacity(user, nat, upload, 5000, 40000, paths)


def group(**changed: Capacity) -> list[Capacity]:
    return [changed.get(name, peer(name)) for name in NAMES]


def test_public_beats_nated() -> None:
    caps = group(dan=peer("dan", NatType.OPEN))
    election = rank_hosts(caps)
    assert election.winner == "dan"
    assert election.reasons[0] == "public address"
    assert election.candidate("dan").reach > election.candidate("ann").reach


def test_a_weak_cpu_is_not_chosen_even_when_public() -> None:
    weak = replace(peer("dan", NatType.OPEN), encodes_per_s=300, decodes_per_s=2000)
    election = rank_hosts(group(dan=weak))
    assert election.winner != "dan"
    dan = election.candidate("dan")
    assert not dan.eligible and any("CPU too weak" in r for r in dan.reasons)
    assert mix_load_permille(weak, 5) > DEFAULT_POLICY.max_mix_load_permille


def test_upload_too_small_for_the_streams_excludes() -> None:
    needed = required_upload_bps(5)
    assert needed == 4 * DEFAULT_POLICY.stream_bps
    thin = peer("dan", NatType.OPEN, upload=needed - 1)
    election = rank_hosts(group(dan=thin))
    assert election.winner != "dan" and not election.candidate("dan").eligible
    assert "not eligible: upload too small" in election.candidate("dan").reasons
    # with two participants fewer the same upload carries the mix
    three = [c for c in group(dan=thin) if c.user in ("ann", "dan", "eve")]
    assert rank_hosts(three).candidate("dan").eligible


def test_udp_blocked_is_never_eligible() -> None:
    blocked = peer("ann", NatType.UDP_BLOCKED)
    assert not rank_hosts(group(ann=blocked)).candidate("ann").eligible


def test_path_quality_decides_between_equals() -> None:
    far = replace(peer("ann"), paths=tuple(PathQuality(p, 300, 50) for p in NAMES if p != "ann"))
    election = rank_hosts([far, peer("ben")])
    assert election.winner == "ben"
    assert election.candidate("ann").path < election.candidate("ben").path


def test_ties_go_to_the_smallest_name_whatever_the_order() -> None:
    caps = group()
    for order in itertools.permutations(caps):
        assert elect_host(order) == "ann"


def test_nobody_eligible_falls_back_to_the_best_score() -> None:
    caps = [replace(c, upload_bps=0) for c in group(eve=peer("eve", NatType.OPEN))]
    election = rank_hosts(caps)
    assert election.fallback and election.winner == "eve"


def test_the_load_and_the_need_follow_the_mixer() -> None:
    cap = peer("ann")
    # 5 participants: 4 encodes (max_speakers + 1) and 4 decodes, 50 times a second
    assert mix_load_permille(cap, 5) == 1000 * 200 // 5000 + 1000 * 200 // 40000
    assert mix_load_permille(cap, 1) == 0
    assert mix_load_permille(replace(cap, encodes_per_s=0), 2) > 1000
    assert required_upload_bps(1) == 0


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one capacity report"):
        rank_hosts([])
    with pytest.raises(ValueError, match="one capacity report"):
        rank_hosts([peer("ann"), peer("ann")])
    with pytest.raises(ValueError, match="negative"):
        Capacity("ann", NatType.OPEN, -1, 1, 1)
    with pytest.raises(ValueError, match="twice"):
        Capacity("ann", NatType.OPEN, 1, 1, 1, (PathQuality("b", 1, 0), PathQuality("b", 2, 0)))
    with pytest.raises(ValueError):
        PathQuality("b", 1, 1001)


capacity = st.builds(
    Capacity,
    st.sampled_from(NAMES),
    st.sampled_from(list(NatType)),
    st.integers(0, 100_000_000),
    st.integers(0, 20_000),
    st.integers(0, 100_000),
    st.lists(
        st.builds(PathQuality, st.sampled_from(NAMES), st.integers(0, 2000), st.integers(0, 1000)),
        max_size=4,
        unique_by=lambda p: p.peer,
    ).map(tuple),
)


@given(st.lists(capacity, min_size=1, max_size=5, unique_by=lambda c: c.user), st.randoms())
@settings(max_examples=300)
def test_the_order_of_the_reports_does_not_matter(caps: list[Capacity], rng: object) -> None:
    shuffled = list(caps)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert rank_hosts(caps) == rank_hosts(shuffled)
    election = rank_hosts(caps)
    eligible = [c for c in election.candidates if c.eligible]
    if eligible:
        assert (
            election.winner
            == max(eligible, key=lambda c: (c.score, [-ord(x) for x in c.user])).user
        )


def test_the_cpu_calibration_runs_the_real_codec_for_the_time_given() -> None:
    ticks = itertools.count()

    def clock() -> float:  # a clock that advances 1 ms per reading
        return next(ticks) / 1000

    headroom = measure_cpu_headroom(0.05, clock=clock)
    assert headroom == CpuHeadroom(encodes_per_s=1000, decodes_per_s=1000)
    measured = measure_cpu_headroom()
    assert measured.encodes_per_s > 0 and measured.decodes_per_s > 0
