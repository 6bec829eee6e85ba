"""Real processes for the examples' tests: a login server, three supernodes, daemons."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hopline.demo.cluster import Cluster
from hopline.testing.daemons import DaemonNet
from hopline.testing.network import start_network


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonNet]:
    """One network for the module (three supernodes)."""
    workdir = tmp_path_factory.mktemp("examples-net")
    with Cluster(workdir / "logs") as cluster:
        ls, nodes = start_network(cluster, workdir, supernodes=3)
        yield DaemonNet(cluster, ls, nodes, workdir)
