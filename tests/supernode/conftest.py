"""A network of real processes for supernode tests: a login server, five supernodes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.demo.cluster import Cluster, Proc
from hopline.testing.network import start_network


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Cluster, Proc, list[Proc]]]:
    """A login server and five supernodes in one overlay."""
    with Cluster(tmp_path / "logs") as cluster:
        ls, nodes = start_network(cluster, tmp_path, supernodes=5)
        yield cluster, ls, nodes
