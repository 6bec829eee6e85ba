"""A client behind a firewall that drops UDP logs in and goes online over TCP.

Real processes in a lab: a login server and two supernodes in the public
namespace, each listening for UDP and TCP on one port of its 203.0.113.x
address. A client in the ``udp-blocked`` namespace registers and logs in with
the ``hopline`` command line (the login-server calls fall back to TCP) and
runs a :class:`~hopline.client.session.ClientSession` through
``hopline.netlab.agent``, whose race reaches a home supernode over TCP. A
client behind ``masquerade`` does the same over UDP, and each finds the other
in the directory, the masquerade client at its mapped public address.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.netlab import Lab, NatClass
from hopline.netlab.network import LabNetwork
from hopline.netlab.system import in_namespace
from hopline.wire import Address


@pytest.fixture
def network(lab: Lab, tmp_path: Path) -> Iterator[LabNetwork]:
    """Login server and two supernodes on the public segment; clients blocked and masq."""
    net = LabNetwork(lab, tmp_path)
    net.start(supernodes=2)
    lab.add_client("blocked", NatClass.UDP_BLOCKED)
    lab.add_client("masq", NatClass.MASQUERADE)
    yield net


def udp_dropped(lab: Lab, client: str) -> int:
    """Packets the client's firewall has dropped (the counter of its UDP rule)."""
    router = lab.host(client).routers[0]
    chain = ["nft", "list", "chain", "ip", f"{lab.prefix}nat", "forward"]
    found = re.search(r"counter packets (\d+)", in_namespace(router, chain).stdout)
    assert found is not None
    return int(found.group(1))


def test_udp_blocked_client_goes_online_over_tcp_and_finds_a_masquerade_client(
    network: LabNetwork,
) -> None:
    lab = network.lab
    assert network.account("blocked", "register", "blocky")["registered"] == "blocky"
    login = network.account("blocked", "login", "blocky")
    assert login["user"] == "blocky"
    assert sorted(login["bootstrap"]) == sorted(network.supernodes)
    assert udp_dropped(lab, "blocked") > 0  # UDP was tried and dropped: TCP carried them

    blocky = network.agent("blocked", "blocky")
    home = blocky.request({"op": "connect"}, timeout=60)
    assert home["ok"], home
    assert home["transport"] == "tcp"
    assert home["home"] in network.supernodes
    assert str(Address.parse(home["observed"]).host) == lab.public_address("blocked")

    network.account("masq", "register", "masky")
    network.account("masq", "login", "masky")
    masky = network.agent("masq", "masky")
    masq_home = masky.request({"op": "connect"}, timeout=60)
    assert masq_home["ok"], masq_home
    assert masq_home["transport"] == "udp"
    observed = Address.parse(masq_home["observed"])
    assert str(observed.host) == lab.public_address("masq") != lab.address("masq")

    found = blocky.request({"op": "lookup", "user": "masky"})
    assert found["ok"] and found["state"] == "online", found
    mapped = [e["address"] for e in found["endpoints"] if e["kind"] == 1]  # server-reflexive
    assert mapped == [str(observed)]

    back = masky.request({"op": "lookup", "user": "blocky"})
    assert back["ok"] and back["state"] == "online", back
    assert [e["address"] for e in back["endpoints"] if e["kind"] == 1] == [home["observed"]]
    homes = [e for e in back["endpoints"] if e["kind"] == 5]  # where path offers reach it
    assert [(e["address"], e["transport"]) for e in homes] == [(home["home"], 1)]

    for agent in (blocky, masky):
        assert agent.request({"op": "close"})["closed"]
        assert agent.wait(10) == 0
