"""Networks of real processes for supernode tests: a login server and supernodes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hopline.demo.cluster import Cluster, Proc
from hopline.testing.network import scrape_metrics, start_network

Network = tuple[Cluster, Proc, list[Proc]]
StartNetwork = Callable[..., Network]


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    """A login server and five supernodes in one overlay."""
    with Cluster(tmp_path / "logs") as cluster:
        ls, nodes = start_network(cluster, tmp_path, supernodes=5)
        yield cluster, ls, nodes


@pytest.fixture
def start_overlay(tmp_path: Path) -> Iterator[StartNetwork]:
    """Start a login server and ``supernodes`` supernodes, each with ``extra`` arguments.

    Every supernode serves metrics; the call returns once all see each other.
    """
    with Cluster(tmp_path / "logs", grace_s=8.0) as cluster:

        def start(supernodes: int, extra: list[str]) -> Network:
            ls, nodes = start_network(cluster, tmp_path, supernodes, extra)
            return cluster, ls, nodes

        yield start


@pytest.fixture
def scrape() -> Callable[[str], dict[str, float]]:
    """A function reading a supernode's metrics endpoint (see :func:`scrape_metrics`)."""
    return scrape_metrics


@pytest.fixture
def wait_for() -> Callable[[Callable[[], bool], float], bool]:
    """A function polling a condition (see :func:`poll`)."""
    return poll


def poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 0.2 s until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()
