"""JitterBuffer: seeded simulations of jitter, loss and reordering, plus edge cases."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hopline.media.jitterbuffer import (
    _MAX_SAMPLES,
    _PERCENTILE,
    Conceal,
    Frame,
    JitterBuffer,
    PlayoutItem,
    Recover,
    _DelayEstimator,
)
from hopline.media.packet import MediaFrame

FRAME_S = 0.02
SAMPLES = 960


def _frame(k: int, first_seq: int = 0, first_ts: int = 0) -> MediaFrame:
    return MediaFrame(
        (first_seq + k) % 65536, (first_ts + k * SAMPLES) % (1 << 32), k.to_bytes(4, "big")
    )


def _index(frame: MediaFrame) -> int:
    """The sender's frame number, carried in the payload."""
    return int.from_bytes(frame.payload, "big")


@dataclass
class Run:
    buffer: JitterBuffer
    items: list[tuple[float, PlayoutItem]] = field(default_factory=list)
    delivered: set[int] = field(default_factory=set)
    targets: list[tuple[float, float, float]] = field(default_factory=list)


def simulate(
    *,
    seconds: float,
    jitter_s: float | list[tuple[float, float]],
    loss: float = 0.0,
    seed: int = 1,
    first_seq: int = 0,
    first_ts: int = 0,
    base_delay: float = 0.05,
) -> Run:
    """Sender emits frame k at k*20 ms; each arrives after base + uniform(0, jitter).

    ``jitter_s`` may be a schedule ``[(from_time, jitter), ...]``. The receiver
    calls get() every 20 ms at an offset phase and puts everything that arrived.
    """
    rng = random.Random(seed)
    schedule = jitter_s if isinstance(jitter_s, list) else [(0.0, jitter_s)]
    arrivals: list[tuple[float, int]] = []
    count = int(seconds / FRAME_S)
    for k in range(count):
        sent = k * FRAME_S
        jitter = [j for start, j in schedule if start <= sent][-1]
        if rng.random() < loss:
            continue
        arrivals.append((sent + base_delay + rng.uniform(0, jitter), k))
    arrivals.sort()
    run = Run(JitterBuffer())
    pos = 0
    now = 0.0073
    while now < seconds + 1.0:
        while pos < len(arrivals) and arrivals[pos][0] <= now:
            at, k = arrivals[pos]
            run.buffer.put(_frame(k, first_seq, first_ts), at)
            run.delivered.add(k)
            pos += 1
        item = run.buffer.get(now)
        if item is not None:
            run.items.append((now, item))
        run.targets.append((now, run.buffer.target_delay_ms, run.buffer.current_delay_ms))
        now += FRAME_S
    return run


def _consumed(run: Run, first_seq: int = 0) -> list[tuple[int, PlayoutItem]]:
    """(sender frame number, item) for every item that consumed a sequence number."""
    out: list[tuple[int, PlayoutItem]] = []
    for _, item in run.items:
        if isinstance(item, Frame):
            out.append((_index(item.frame), item))
        elif isinstance(item, Recover) or not item.stretch:
            out.append(((item.seq - first_seq) % 65536, item))
    return out


def _check_invariants(run: Run, first_seq: int = 0) -> list[tuple[int, PlayoutItem]]:
    consumed = _consumed(run, first_seq)
    played = [_index(item.frame) for _, item in run.items if isinstance(item, Frame)]
    assert len(played) == len(set(played)), "a frame was played twice"
    order = [k for k, _ in consumed]
    assert order == sorted(order), "playout order broken"
    assert len(order) == len(set(order))
    gaps = sum(b - a - 1 for a, b in itertools.pairwise(order))
    assert gaps == run.buffer.skipped, "sequence numbers vanished without a decision"
    for k, item in consumed:
        if isinstance(item, Frame):
            assert (item.frame.seq - first_seq) % 65536 == k
        if k not in run.delivered:
            assert isinstance(item, Conceal | Recover), f"lost frame {k} got {item}"
    for _, item in run.items:
        if isinstance(item, Recover):
            assert (item.via_next.seq - item.seq) % 65536 == 1
    assert len(run.buffer) <= 64
    return consumed


@pytest.mark.parametrize("jitter_ms", [0, 30, 80])
@pytest.mark.parametrize("loss", [0.0, 0.1])
def test_simulation_invariants(jitter_ms: int, loss: float) -> None:
    run = simulate(
        seconds=20, jitter_s=jitter_ms / 1000, loss=loss, seed=jitter_ms + int(loss * 100)
    )
    consumed = _check_invariants(run)
    frames = sum(isinstance(item, Frame) for _, item in consumed)
    delivered = len(run.delivered)
    # nearly everything that arrived gets played: late drops and skips stay rare
    assert frames >= 0.95 * delivered
    assert run.buffer.late <= 0.03 * delivered
    if loss:
        assert run.buffer.lost > 0
        assert run.buffer.recovered > 0
        assert run.buffer.concealed > 0
    if jitter_ms == 0 and loss == 0:
        assert frames == delivered
        assert run.buffer.late == 0
        assert run.buffer.lost == 0


def test_target_follows_jitter_level() -> None:
    calm = simulate(seconds=10, jitter_s=0.0)
    mid = simulate(seconds=10, jitter_s=0.03, seed=2)
    rough = simulate(seconds=10, jitter_s=0.08, seed=3)
    assert calm.buffer.target_delay_ms <= 25
    assert 35 <= mid.buffer.target_delay_ms <= 80
    assert 80 <= rough.buffer.target_delay_ms <= 140
    assert rough.buffer.jitter_ms > mid.buffer.jitter_ms > calm.buffer.jitter_ms


def test_delay_rises_under_jitter_and_falls_back_after() -> None:
    run = simulate(seconds=30, jitter_s=[(0.0, 0.0), (5.0, 0.1), (12.0, 0.0)], seed=7)
    _check_invariants(run)
    before = [t for now, t, _ in run.targets if 3 < now < 5]
    during = [(t, c) for now, t, c in run.targets if 8 < now < 12]
    assert max(before) <= 25
    assert min(t for t, _ in during) >= 90
    assert sum(c for _, c in during) / len(during) >= 70
    # once calm: within 10 s both the target and the real playout delay are low again
    settled = [(now, t, c) for now, t, c in run.targets if 22 < now < 30]
    assert settled
    assert all(t <= 25 for _, t, _ in settled)
    assert all(c <= 70 for _, _, c in settled)
    assert run.buffer.skipped > 0


def test_sequence_wraps_at_65535() -> None:
    first_seq, first_ts = 65000, (1 << 32) - 100 * SAMPLES
    run = simulate(seconds=30, jitter_s=0.03, loss=0.05, first_seq=first_seq, first_ts=first_ts)
    consumed = _check_invariants(run, first_seq)
    assert max(k for k, _ in consumed) > 1000  # went well past the wrap
    frames = sum(isinstance(item, Frame) for _, item in consumed)
    assert frames >= 0.95 * len(run.delivered)


def test_late_frames_are_counted_not_played() -> None:
    jb = JitterBuffer()
    for k in (0, 2, 3, 4):
        jb.put(_frame(k), 0.0)
    items = [jb.get(0.1 + i * FRAME_S) for i in range(3)]
    assert items[0] == Frame(_frame(0))
    assert items[1] == Recover(1, _frame(2))
    assert items[2] == Frame(_frame(2))
    jb.put(_frame(1), 0.2)
    assert jb.late == 1
    jb.put(_frame(0), 0.2, redundant=True)
    assert jb.dropped["redundant-stale"] == 1
    jb.put(_frame(3), 0.2)
    assert jb.dropped["duplicate"] == 1
    assert jb.get(0.2) == Frame(_frame(3))
    assert jb.get(0.22) == Frame(_frame(4))


def test_redundant_copy_fills_a_hole() -> None:
    jb = JitterBuffer()
    jb.put(_frame(0), 0.0)
    jb.put(_frame(2), 0.04)
    jb.put(_frame(1), 0.04, redundant=True)
    played = [jb.get(0.05 + i * FRAME_S) for i in range(3)]
    assert played == [Frame(_frame(0)), Frame(_frame(1)), Frame(_frame(2))]
    assert jb.lost == 0


def test_reordered_before_start_lowers_the_start() -> None:
    jb = JitterBuffer()
    jb.put(_frame(5), 0.0)
    jb.put(_frame(4), 0.001)
    assert jb.get(0.005) is None  # still buffering
    assert jb.get(0.05) == Frame(_frame(4))
    assert jb.get(0.07) == Frame(_frame(5))


def test_underrun_stretches_instead_of_losing() -> None:
    jb = JitterBuffer()
    jb.put(_frame(0), 0.0)
    assert jb.get(0.03) == Frame(_frame(0))
    assert jb.get(0.05) == Conceal(1, stretch=True)
    jb.put(_frame(1), 0.06)
    assert jb.get(0.07) == Frame(_frame(1))
    assert jb.lost == 0
    assert jb.late == 0


def test_long_pause_rebuffers_and_keeps_old_frames_out() -> None:
    jb = JitterBuffer()
    jb.put(_frame(0), 0.0)
    assert isinstance(jb.get(0.03), Frame)
    now = 0.05
    while (item := jb.get(now)) is not None:
        assert item == Conceal(1, stretch=True)
        now += FRAME_S
    assert now < 1.0
    jb.put(_frame(0), now)
    assert jb.late == 1
    jb.put(_frame(50), now)
    assert jb.get(now + 0.001) is None
    assert jb.get(now + 0.5) == Frame(_frame(50))


def test_memory_bounded_under_far_future_flood() -> None:
    jb = JitterBuffer(capacity=64)
    for k in range(10):
        jb.put(_frame(k), k * FRAME_S)
    rng = random.Random(5)
    for i in range(20000):
        jb.put(MediaFrame(rng.randrange(65536), rng.randrange(1 << 32), b"x"), 1.0 + i * 1e-4)
        assert len(jb) <= 64
    assert jb.dropped["too-far"] > 5000
    assert sum(jb.dropped.values()) >= 20000 - 64 * (jb.dropped["resync"] + 1)


def test_sender_restart_resyncs() -> None:
    jb = JitterBuffer(capacity=8)
    jb.put(_frame(0), 0.0)
    assert isinstance(jb.get(0.03), Frame)
    for k in range(8):
        jb.put(_frame(30000 + k), 0.04 + k * FRAME_S)
    assert jb.dropped["too-far"] == 7
    assert jb.dropped["resync"] == 1
    assert len(jb) == 1
    assert jb.get(0.5) == Frame(_frame(30007))


def test_late_spike_raises_target_at_once() -> None:
    jb = JitterBuffer()
    decisions: list[PlayoutItem] = []
    for slot in range(100):  # two calm seconds, frame 70 held up in the network
        now = slot * FRAME_S + 0.001
        if slot >= 3 and slot - 3 != 70:
            jb.put(_frame(slot - 3), now)
        item = jb.get(now)
        if item is not None and not (isinstance(item, Conceal) and item.stretch):
            decisions.append(item)
    assert jb.target_delay_ms <= 25
    assert decisions[70] == Recover(70, _frame(71))
    jb.put(_frame(70), 73 * FRAME_S + 0.301)  # 300 ms later than its peers
    assert jb.late == 1
    assert jb.target_delay_ms >= 300
    stats = jb.stats()
    assert (stats.late, stats.lost, stats.recovered) == (1, 1, 1)
    assert stats.target_delay_ms == jb.target_delay_ms


def test_flood_does_not_inflate_the_target() -> None:
    jb = JitterBuffer(capacity=64)
    for k in range(50):
        jb.put(_frame(k), k * FRAME_S)
    before = jb.target_delay_ms
    rng = random.Random(9)
    for _ in range(60):  # fewer than capacity: no resync
        jb.put(MediaFrame(rng.randrange(1000, 30000), rng.randrange(1 << 32), b"x"), 1.0)
    assert jb.dropped["too-far"] == 60
    assert jb.target_delay_ms == before


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.integers(0, 65535),
            st.integers(0, (1 << 32) - 1),
            st.floats(0, 0.5),
            st.booleans(),
        ),
        max_size=300,
    )
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_operation_sequence_is_safe(ops: list[tuple[bool, int, int, float, bool]]) -> None:
    jb = JitterBuffer(capacity=16)
    now = 0.0
    played: list[MediaFrame] = []  # kept alive, so identities stay distinct
    for is_get, seq, ts, step, redundant in ops:
        now += step
        if is_get:
            item = jb.get(now)
            if isinstance(item, Frame):
                played.append(item.frame)
        else:
            jb.put(MediaFrame(seq, ts, b"x"), now, redundant=redundant)
        assert len(jb) <= 16
        assert 20 <= jb.target_delay_ms <= 400
    assert len({id(frame) for frame in played}) == len(played)


def test_ancient_late_frame_does_not_move_the_target() -> None:
    jb = JitterBuffer(capacity=16)
    for slot in range(200):
        now = slot * FRAME_S + 0.001
        if slot >= 3:
            jb.put(_frame(slot - 3), now)
        jb.get(now)
    before = jb.target_delay_ms
    jb.put(_frame(10), 4.0)  # ~180 frames behind: stale, says nothing about today's delay
    assert jb.late == 1
    assert jb.target_delay_ms == before


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.floats(0.0, 0.2), st.integers(-3, 6)), min_size=1, max_size=300),
    window_s=st.sampled_from([0.05, 0.5, 2.0]),
)
def test_delay_estimator_window_matches_sorting_it_afresh(
    steps: list[tuple[float, int]], window_s: float
) -> None:
    """The incrementally sorted window gives what sorting the window anew gives."""
    estimator = _DelayEstimator(48000, window_s)
    arrivals: list[tuple[float, float]] = []
    now, ts = 0.0, 0
    for gap, frames in steps:
        now += gap
        ts += frames * 960
        estimator.add(now, ts)
        arrivals.append((now, now - ts / 48000))
        window = [t for at, t in arrivals if at >= now - window_s][-_MAX_SAMPLES:]
        transits = sorted(window)
        index = min(len(transits) - 1, int(_PERCENTILE * len(transits)))
        assert estimator.min_transit() == transits[0]
        assert estimator.variation_s() == transits[index] - transits[0]
