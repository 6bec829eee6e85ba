"""The media clock: frames due, catch-up after a stall, no spinning on early timers."""

from __future__ import annotations

import asyncio

import pytest

from hopline.calls.pacing import FRAME_S, MAX_CATCH_UP, SLACK_S, FrameClock
from hopline.runtime.loop import run as run_loop
from hopline.runtime.loop import uvloop_available


def test_first_frame_is_due_at_start() -> None:
    clock = FrameClock(100.0)
    assert clock.due(100.0) == [100.0]
    assert clock.due(100.0) == []
    assert clock.sleep_for(100.0) == pytest.approx(FRAME_S)


def test_frames_get_their_exact_times_even_when_woken_early() -> None:
    clock = FrameClock(0.0)
    clock.due(0.0)
    early = FRAME_S - SLACK_S / 2  # a timer that fired a little early
    assert clock.due(early) == [pytest.approx(FRAME_S)]
    assert clock.sleep_for(early) == pytest.approx(FRAME_S + SLACK_S / 2)


def test_a_wake_up_well_before_the_frame_runs_nothing() -> None:
    clock = FrameClock(0.0)
    clock.due(0.0)
    assert clock.due(FRAME_S - 3 * SLACK_S) == []
    assert clock.sleep_for(FRAME_S - 3 * SLACK_S) == pytest.approx(3 * SLACK_S)


def test_after_a_stall_only_the_newest_frames_run() -> None:
    clock = FrameClock(0.0)
    clock.due(0.0)
    late = 30 * FRAME_S + 0.001
    times = clock.due(late)
    assert len(times) == MAX_CATCH_UP
    assert times[-1] == pytest.approx(30 * FRAME_S)
    assert times == sorted(times)
    assert clock.skipped == 30 - MAX_CATCH_UP
    assert clock.due(late) == []


def test_simulated_timer_that_fires_up_to_a_millisecond_early() -> None:
    """A millisecond timer (as uvloop's) wakes at most twice per frame."""
    clock = FrameClock(0.0)
    now, wakeups, frames = 0.0, 0, 0
    while now < 2.0:
        frames += len(clock.due(now))
        wakeups += 1
        wait = clock.sleep_for(now)
        now += max(1e-5, round(wait * 1000) / 1000 - 0.0009)  # rounded, early; a turn costs 10 µs
    assert frames == pytest.approx(2.0 / FRAME_S, abs=1)
    assert wakeups <= 2 * frames


async def _pace(seconds: float) -> tuple[int, int]:
    loop = asyncio.get_running_loop()
    clock = FrameClock(loop.time())
    frames = wakeups = 0
    while loop.time() - clock.start < seconds:
        frames += len(clock.due(loop.time()))
        wakeups += 1
        await asyncio.sleep(clock.sleep_for(loop.time()))
    return frames, wakeups


@pytest.mark.parametrize("use_uvloop", [False, True], ids=["asyncio", "uvloop"])
def test_real_event_loop_does_not_spin(use_uvloop: bool) -> None:
    if use_uvloop and not uvloop_available():
        pytest.skip("uvloop is not installed")
    frames, wakeups = run_loop(_pace(0.5), use_uvloop=use_uvloop)
    assert frames >= 0.5 / FRAME_S - MAX_CATCH_UP
    # Before the clock allowed for early timers, uvloop woke ~40 times a frame.
    assert wakeups <= 3 * frames, (frames, wakeups)
