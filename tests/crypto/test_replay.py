"""ReplayWindow: unit tests and a property test against a set-based model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.crypto import ReplayError, ReplayWindow


def reason(window: ReplayWindow, counter: int) -> str | None:
    try:
        window.check(counter)
    except ReplayError as exc:
        return str(exc.reason)
    return None


def test_fresh_window_accepts_zero_and_rejects_duplicates() -> None:
    window = ReplayWindow(64)
    assert window.highest == -1
    window.update(0)
    assert window.highest == 0
    assert reason(window, 0) == "replayed"
    with pytest.raises(ReplayError):
        window.update(0)


def test_out_of_order_inside_window() -> None:
    window = ReplayWindow(64)
    for counter in (10, 3, 7, 63, 12):
        window.update(counter)
    assert window.highest == 63
    for counter in (3, 7, 10, 12, 63):
        assert reason(window, counter) == "replayed"
    for counter in (0, 1, 2, 4, 62):
        assert reason(window, counter) is None


def test_too_old_boundary() -> None:
    window = ReplayWindow(64)
    window.update(100)
    assert reason(window, 100 - 63) is None  # oldest slot still tracked
    assert reason(window, 100 - 64) == "too_old"
    window.update(100 - 63)
    assert reason(window, 100 - 63) == "replayed"


def test_big_jump_clears_window_without_huge_ints() -> None:
    window = ReplayWindow(1024)
    window.update(5)
    window.update(2**55)  # would be a 2**55-bit int if shifted blindly
    assert window.highest == 2**55
    assert reason(window, 5) == "too_old"
    assert reason(window, 2**55 - 1) is None
    assert reason(window, 2**55) == "replayed"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ReplayWindow(0)
    assert reason(ReplayWindow(), -1) == "bad_counter"


def test_check_does_not_mutate() -> None:
    window = ReplayWindow(8)
    window.check(50)
    assert window.highest == -1
    assert reason(window, 50) is None


def model_reason(seen: set[int], highest: int, size: int, counter: int) -> str | None:
    if counter > highest:
        return None
    if highest - counter >= size:
        return "too_old"
    return "replayed" if counter in seen else None


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=130),
    counters=st.lists(st.integers(min_value=0, max_value=400), max_size=300),
)
def test_matches_model(size: int, counters: list[int]) -> None:
    window = ReplayWindow(size)
    seen: set[int] = set()
    highest = -1
    for counter in counters:
        expected = model_reason(seen, highest, size, counter)
        assert reason(window, counter) == expected
        if expected is None:
            window.update(counter)
            seen.add(counter)
            highest = max(highest, counter)
        else:
            with pytest.raises(ReplayError):
                window.update(counter)
        assert window.highest == highest
        assert window.seen(counter) == (counter in seen and highest - counter < size)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=200, unique=True))
def test_every_fresh_counter_in_window_accepted_once(counters: list[int]) -> None:
    """With a window larger than the spread, each distinct counter is accepted exactly once."""
    window = ReplayWindow(8192)
    for counter in counters:
        window.update(counter)
    for counter in counters:
        assert reason(window, counter) == "replayed"
