"""CoreTimer: one loop timer per core; the lazy kind keeps an earlier arming."""

from __future__ import annotations

import asyncio
import time

from hopline.runtime.timer import CoreTimer


async def test_eager_timer_moves_to_the_latest_deadline() -> None:
    fired: list[float] = []
    timer = CoreTimer(lambda: fired.append(time.time()))
    now = time.time()
    timer.arm(now + 0.02)
    timer.arm(now + 0.2)
    assert timer.deadline == now + 0.2
    await asyncio.sleep(0.08)
    assert fired == []  # the first arming was replaced
    timer.arm(None)
    assert timer.deadline is None


async def test_lazy_timer_keeps_an_earlier_arming_and_the_callback_rearms() -> None:
    fired: list[float] = []
    later = time.time() + 0.1

    def callback() -> None:
        fired.append(time.time())
        if len(fired) == 1:
            timer.arm(later)  # the shell re-arms for the core's real deadline

    timer = CoreTimer(callback, lazy=True)
    first = time.time() + 0.01
    timer.arm(first)
    timer.arm(later)  # later than the armed deadline: the arming stays
    assert timer.deadline == first
    await asyncio.sleep(0.05)
    assert len(fired) == 1 and timer.deadline == later
    await asyncio.sleep(0.15)
    assert len(fired) == 2 and fired[1] >= later - 0.002
    assert timer.deadline is None


async def test_lazy_timer_moves_earlier_and_cancels_on_none() -> None:
    fired: list[str] = []
    timer = CoreTimer(lambda: fired.append("x"), lazy=True)
    now = time.time()
    timer.arm(now + 10.0)
    timer.arm(now + 0.01)  # earlier: replaces the arming
    assert timer.deadline == now + 0.01
    await asyncio.sleep(0.05)
    assert fired == ["x"]
    timer.arm(time.time() + 0.01)
    timer.arm(None)
    await asyncio.sleep(0.03)
    assert fired == ["x"] and timer.deadline is None
