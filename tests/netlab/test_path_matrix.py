"""Every client class against every other gets a working path of the kind its NATs allow.

Real processes in one lab: a login server and two supernodes on the public
segment, and two clients of each class (public, masquerade, full cone,
symmetric, double NAT, UDP blocked, IPv6-reachable), each logged in through
its own NAT and running :mod:`hopline.netlab.agent`. For all 49 ordered class
pairs the caller opens a path to the callee and pings over it, then the
callee pings back over the path it accepted (:mod:`hopline.netlab.matrix`).
The expected kind of each pair follows from the classes' behaviour
(:func:`~hopline.netlab.matrix.expected_path`); the time to the first
authenticated packet from the peer is recorded for each pair.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.netlab import Lab
from hopline.netlab.matrix import (
    CLASSES,
    PairResult,
    expected_path,
    host_name,
    markdown_table,
    rounds,
    run_round,
)
from hopline.netlab.nat import NatClass
from hopline.netlab.network import LabNetwork


@pytest.fixture(scope="module")
def network(netlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    """Two supernodes and two logged-in clients of every class."""
    workdir = tmp_path_factory.mktemp("matrix")
    with Lab(workdir / "lab") as lab:
        net = LabNetwork(lab, workdir)
        net.start(supernodes=2)
        net.clients_of({host_name(nat, n): nat for nat in CLASSES for n in (1, 2)})
        yield net


def test_expected_paths_follow_the_nat_behaviour() -> None:
    assert expected_path(NatClass.MASQUERADE, NatClass.DOUBLE_NAT) == "direct"
    assert expected_path(NatClass.SYMMETRIC, NatClass.FULL_CONE) == "direct"
    assert expected_path(NatClass.SYMMETRIC, NatClass.MASQUERADE) == "relay"
    assert expected_path(NatClass.IPV6, NatClass.IPV6) == "direct"
    assert expected_path(NatClass.IPV6, NatClass.SYMMETRIC) == "relay"
    assert expected_path(NatClass.UDP_BLOCKED, NatClass.PUBLIC) == "tcp-relay"
    pairs = [pair for r in rounds() for pair in r]
    assert len(pairs) == len(set(pairs)) == len(CLASSES) ** 2
    for r in rounds():
        assert len({a for a, _ in r}) == len({b for _, b in r}) == len(r)


def test_every_pair_of_classes_gets_the_path_its_nats_allow(
    network: LabNetwork, tmp_path: Path
) -> None:
    results: list[PairResult] = []
    for pairs in rounds():
        results += run_round(network, pairs)
    report = tmp_path / "matrix.json"
    report.write_text(json.dumps([r.to_json() for r in results], indent=2))
    print(markdown_table(results))
    failed = [r.to_json() for r in results if not r.passed]
    assert not failed, json.dumps(failed, indent=2)
    assert all(r.first_packet_ms is not None for r in results)
    ipv6 = next(r for r in results if r.caller == r.callee == NatClass.IPV6)
    assert ipv6.family == "ipv6"
