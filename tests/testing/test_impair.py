"""ImpairedChannel: measured loss and burst length, delay, jitter, determinism."""

from __future__ import annotations

import pytest

from hopline.testing.impair import ImpairedChannel, Impairment, gilbert_elliott_probabilities

N = 100_000


def _loss_pattern(impairment: Impairment, n: int = N) -> list[bool]:
    """Send ``n`` numbered datagrams 20 ms apart; True where one was lost."""
    channel = ImpairedChannel(impairment)
    for i in range(n):
        channel.send(i.to_bytes(4, "big"), i * 0.02)
    got = {int.from_bytes(d, "big") for d in channel.deliver(n * 0.02 + 10.0)}
    assert channel.sent == n
    assert channel.dropped + channel.delivered == n
    return [i not in got for i in range(n)]


def _bursts(pattern: list[bool]) -> list[int]:
    runs, run = [], 0
    for lost in pattern:
        if lost:
            run += 1
        elif run:
            runs.append(run)
            run = 0
    if run:
        runs.append(run)
    return runs


def test_random_loss_rate_and_bursts() -> None:
    pattern = _loss_pattern(Impairment(loss=0.1, seed=7))
    rate = sum(pattern) / N
    bursts = _bursts(pattern)
    assert rate == pytest.approx(0.1, abs=0.005)
    # Independent loss: runs are geometric, mean 1 / (1 - p).
    assert sum(bursts) / len(bursts) == pytest.approx(1 / 0.9, abs=0.03)


@pytest.mark.parametrize(("loss", "burst"), [(0.1, 3.0), (0.05, 2.0), (0.2, 5.0)])
def test_gilbert_elliott_loss_rate_and_mean_burst(loss: float, burst: float) -> None:
    pattern = _loss_pattern(Impairment(loss=loss, burst=burst, seed=3))
    bursts = _bursts(pattern)
    assert sum(pattern) / N == pytest.approx(loss, rel=0.08)
    assert sum(bursts) / len(bursts) == pytest.approx(burst, rel=0.06)


def test_probabilities_solve_for_rate_and_burst() -> None:
    p, r = gilbert_elliott_probabilities(0.1, 3.0)
    assert r == pytest.approx(1 / 3)
    assert p / (p + r) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        gilbert_elliott_probabilities(1.0, 2.0)


def test_no_loss_and_total_loss() -> None:
    assert not any(_loss_pattern(Impairment(), 1000))
    assert all(_loss_pattern(Impairment(loss=1.0, burst=4.0), 1000))


def test_same_seed_same_run_other_seed_differs() -> None:
    imp = Impairment(loss=0.2, burst=2.0, jitter_ms=30.0, seed=11)
    assert _loss_pattern(imp, 5000) == _loss_pattern(imp, 5000)
    other = Impairment(loss=0.2, burst=2.0, jitter_ms=30.0, seed=12)
    assert _loss_pattern(imp, 5000) != _loss_pattern(other, 5000)


def test_fixed_delay_holds_datagrams_until_due() -> None:
    channel = ImpairedChannel(Impairment(delay_ms=50.0))
    channel.send(b"a", 1.0)
    assert channel.next_arrival() == pytest.approx(1.05)
    assert channel.deliver(1.049) == []
    assert channel.deliver(1.05) == [b"a"]
    assert channel.next_arrival() is None
    assert len(channel) == 0


def test_jitter_bounds_delay_and_reorders() -> None:
    channel = ImpairedChannel(Impairment(delay_ms=10.0, jitter_ms=80.0, seed=5))
    arrivals: dict[int, float] = {}
    order: list[int] = []
    t = 0.0
    for i in range(2000):
        t = i * 0.02
        channel.send(i.to_bytes(4, "big"), t)
        nxt = channel.next_arrival()
        assert nxt is not None
        for data in channel.deliver(t):
            order.append(int.from_bytes(data, "big"))
    while (nxt := channel.next_arrival()) is not None:
        for data in channel.deliver(nxt):
            k = int.from_bytes(data, "big")
            order.append(k)
            arrivals[k] = nxt
    assert sorted(order) == list(range(2000))
    assert order != sorted(order)  # 80 ms of jitter over 20 ms spacing reorders
    for k, at in arrivals.items():
        delay = at - k * 0.02
        assert 0.010 - 1e-9 <= delay <= 0.090 + 1e-9


def test_delivery_is_in_arrival_order() -> None:
    channel = ImpairedChannel(Impairment(jitter_ms=100.0, seed=2))
    for i in range(50):
        channel.send(bytes([i]), 0.0)
    times = []
    while (nxt := channel.next_arrival()) is not None:
        times.append(nxt)
        channel.deliver(nxt)
    assert times == sorted(times)
    assert channel.delivered == 50


@pytest.mark.parametrize(
    "kwargs",
    [
        {"loss": -0.1},
        {"loss": 1.5},
        {"burst": 0.5},
        {"jitter_ms": -1.0},
        {"delay_ms": float("nan")},
    ],
)
def test_bad_impairment_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Impairment(**kwargs)
