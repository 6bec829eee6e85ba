"""Real processes for the terminal UI's tests: a login server, three supernodes, two daemons."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hopline.demo.cluster import Cluster
from hopline.testing.daemons import DaemonNet
from hopline.testing.network import start_network


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonNet]:
    """One network for the module: alice's daemon registered but logged out, bob online."""
    workdir = tmp_path_factory.mktemp("tui-net")
    with Cluster(workdir / "logs") as cluster:
        ls, nodes = start_network(cluster, workdir, supernodes=3)
        daemons = DaemonNet(cluster, ls, nodes, workdir)
        for name in ("alice", "bob"):
            daemons.up(name)
            daemons.cli(name, "register", name)
        daemons.cli("bob", "login", "bob")
        daemons.wait_online("bob")
        yield daemons
