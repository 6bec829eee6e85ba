"""Each client class behaves as its NAT should, seen by real sockets in the namespaces.

A reflector on two public servers (echo1, echo2) answers every UDP datagram
with the source address it saw, from the address the request went to, or on
request from another port or another server (to observe filtering). Each
probe is one short Python process inside a client namespace.
"""

from __future__ import annotations

import json
import sys

from hopline.netlab import Lab
from hopline.wire import Address

from .conftest import REFLECTOR_PORT, Topology


def mapped(seen: str | None) -> Address:
    assert seen is not None, "no answer came back"
    return Address.parse(seen)


def local_port(probe: dict) -> int:
    return Address.parse(probe["local"]).port


def test_a_public_client_is_seen_with_its_own_address(topology: Topology) -> None:
    lab = topology.lab
    probe = topology.udp("pubc", "echo1", "echo2")
    own = Address.parse(f"{lab.address('pubc')}:{local_port(probe)}")
    assert [mapped(s) for s in probe["seen"]] == [own, own]
    assert lab.address("pubc") == lab.public_address("pubc")
    # nothing filters: answers from another port and another server get in
    assert topology.udp("pubc", "echo1", reply="other-port")["seen"][0] is not None
    assert topology.udp("pubc", "echo1", reply="other-host")["seen"][0] is not None


def test_masquerade_maps_every_destination_to_one_public_port(topology: Topology) -> None:
    lab = topology.lab
    probe = topology.udp("masq", "echo1", "echo2")
    first, second = (mapped(s) for s in probe["seen"])
    assert first == second  # endpoint-independent mapping
    assert str(first.host) == lab.public_address("masq") != lab.address("masq")
    assert lab.address("masq").startswith("192.168.")


def test_masquerade_filters_by_address_and_port(topology: Topology) -> None:
    assert topology.udp("masq", "echo1", reply="same")["seen"][0] is not None
    assert topology.udp("masq", "echo1", reply="other-port")["seen"] == [None]
    assert topology.udp("masq", "echo1", reply="other-host")["seen"] == [None]


def test_full_cone_maps_once_and_lets_anyone_answer(topology: Topology) -> None:
    lab = topology.lab
    probe = topology.udp("cone", "echo1", "echo2")
    first, second = (mapped(s) for s in probe["seen"])
    assert first == second and str(first.host) == lab.public_address("cone")
    assert topology.udp("cone", "echo1", reply="other-port")["seen"][0] is not None
    assert topology.udp("cone", "echo1", reply="other-host")["seen"][0] is not None


def test_symmetric_maps_each_destination_to_another_port(topology: Topology) -> None:
    lab = topology.lab
    probe = topology.udp("sym", "echo1", "echo2")
    first, second = (mapped(s) for s in probe["seen"])
    assert str(first.host) == str(second.host) == lab.public_address("sym")
    assert first.port != second.port  # address-and-port-dependent mapping
    assert topology.udp("sym", "echo1", reply="other-port")["seen"] == [None]


def test_double_nat_is_seen_at_the_carrier_grade_nat(topology: Topology) -> None:
    lab = topology.lab
    host = lab.host("double")
    assert host.address.startswith("10.") and len(host.routers) == 2  # home router, then CGN
    probe = topology.udp("double", "echo1", "echo2")
    first, second = (mapped(s) for s in probe["seen"])
    assert first == second and str(first.host) == lab.public_address("double")
    assert topology.udp("double", "echo1", reply="other-port")["seen"] == [None]


def test_udp_blocked_gets_no_udp_through_but_tcp_connects(topology: Topology) -> None:
    lab = topology.lab
    assert topology.udp("blocked", "echo1", "echo2")["seen"] == [None, None]
    answer = topology.tcp("blocked", "echo1")
    assert answer["connected"], answer
    assert str(mapped(answer["seen"]).host) == lab.public_address("blocked")
    # control: the same probe from the masquerade client gets through
    assert topology.tcp("masq", "echo1")["connected"]


def test_ipv6_client_is_reachable_over_ipv6_only(topology: Topology) -> None:
    lab = topology.lab
    six = lab.host("six")
    assert six.address6 is not None and six.address6.startswith("2001:db8:")
    probe = topology.udp("six", "echo1", v6=True)
    assert mapped(probe["seen"][0]) == Address.parse(f"[{six.address6}]:{local_port(probe)}")
    v4 = topology.udp("six", "echo1", "echo2")  # IPv4 goes through a symmetric NAT
    assert len({mapped(s) for s in v4["seen"]}) == 2

    # a server reaches a reflector on the client over IPv6, not over IPv4
    port = REFLECTOR_PORT + 1
    reflector = [sys.executable, "-m", "hopline.netlab.probe", "serve"]
    inside = lab.run("six", [*reflector, f"[{six.address6}]:{port}", f"0.0.0.0:{port}"])
    inside.wait_ready()
    over_v6 = probe_from("echo1", f"[{six.address6}]:{port}", lab=lab)
    assert str(mapped(over_v6).host) == lab.host("echo1").address6  # no NAT on the way
    assert probe_from("echo1", f"{six.public_address}:{port}", lab=lab) is None
    inside.stop()


def probe_from(server: str, target: str, *, lab: Lab) -> str | None:
    """What a reflector at ``target`` saw of a UDP probe from ``server`` (None: no answer)."""
    host = lab.host(server)
    bind = host.address6 if target.startswith("[") else host.address
    assert bind is not None
    probe = ["-m", "hopline.netlab.probe", "udp", target, "--timeout", "1.2", "--bind", bind]
    out = lab.python(server, *probe)
    return json.loads(out)["seen"][target]
