"""STUN and NAT discovery through real kernel NATs.

One lab for the module: a login server and two supernodes on the public
segment (each on its own 203.0.113.x address, main port 33033 and the STUN
alternate port 33034), and a client behind every NAT class. Standard STUN
clients that Hopline does not contain (aioice's ICE gathering, and Debian's
``stun`` when installed) must get the router's public address from a
supernode, and ``hopline netcheck --json`` must name each class correctly.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hopline.demo.cluster import hopline_command
from hopline.netlab import Lab, NatClass
from hopline.netlab.network import SUPERNODE_PORT, LabNetwork

AIOICE_GATHER = """
import asyncio, json, sys
import aioice

async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    connection = aioice.Connection(
        ice_controlling=True, stun_server=(host, int(port)), use_ipv6=False
    )
    await connection.gather_candidates()
    found = {"host": [], "srflx": []}
    for candidate in connection.local_candidates:
        if candidate.type in found:
            found[candidate.type].append(f"{candidate.host}:{candidate.port}")
    await connection.close()
    print(json.dumps(found))

asyncio.run(main())
"""
CLIENTS = {
    "pubc": NatClass.PUBLIC,
    "masq": NatClass.MASQUERADE,
    "cone": NatClass.FULL_CONE,
    "sym": NatClass.SYMMETRIC,
    "double": NatClass.DOUBLE_NAT,
    "blocked": NatClass.UDP_BLOCKED,
    "six": NatClass.IPV6,
}
EIM, APDM = "endpoint-independent", "address-and-port-dependent"


@dataclass
class StunLab:
    """The lab and the supernodes' listen addresses."""

    lab: Lab
    supernodes: list[str]
    supernode6: str

    def netcheck(self, client: str, *extra: str) -> dict[str, Any]:
        servers = [arg for sn in [*self.supernodes, *extra] for arg in ("--server", sn)]
        argv = hopline_command("netcheck", "--json", *servers)
        return json.loads(self.lab.exec(client, argv, timeout=60))

    def public_ip(self, client: str) -> str:
        return self.lab.public_address(client)


@pytest.fixture(scope="module")
def stun_lab(netlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StunLab]:
    """Login server, two supernodes and one client per NAT class."""
    workdir = tmp_path_factory.mktemp("stunlab")
    with Lab(workdir / "lab") as lab:
        network = LabNetwork(lab, workdir)
        network.start(supernodes=2)
        host6 = lab.add_server("sn6")  # an IPv6-only supernode, in an overlay of its own
        ready6 = network.supernode("sn6", f"[{host6.address6}]:{SUPERNODE_PORT}")
        for name, nat in CLIENTS.items():
            lab.add_client(name, nat)
        yield StunLab(lab, network.supernodes, ready6["listen"])


@pytest.mark.parametrize("client", ["pubc", "masq", "cone", "sym", "double"])
def test_aioice_gets_the_public_address_from_a_supernode(stun_lab: StunLab, client: str) -> None:
    out = stun_lab.lab.python(client, "-c", AIOICE_GATHER, stun_lab.supernodes[0])
    found = json.loads(out)
    public = stun_lab.public_ip(client)
    reflexive = found["srflx"] or found["host"]  # no NAT: aioice may drop srflx == host
    assert reflexive, found
    assert {a.rsplit(":", 1)[0] for a in reflexive} == {public}


@pytest.mark.skipif(shutil.which("stun") is None, reason="Debian's stun-client is not installed")
@pytest.mark.parametrize("client", ["masq", "double"])
def test_debian_stun_client_gets_the_public_address(stun_lab: StunLab, client: str) -> None:
    argv = ["sh", "-c", f"stun {stun_lab.supernodes[0]} 1 -v 2>&1"]  # -v writes to stderr
    out = stun_lab.lab.exec(client, argv, timeout=30, check=False)
    assert f"MappedAddress = {stun_lab.public_ip(client)}:" in out, out


EXPECTED = {
    "pubc": ("open", EIM, EIM),
    "masq": ("port-restricted", EIM, APDM),
    "cone": ("full-cone", EIM, EIM),
    "sym": ("symmetric", APDM, APDM),
    "double": ("port-restricted", EIM, APDM),
}


@pytest.mark.parametrize("client", sorted(EXPECTED))
def test_netcheck_names_the_nat_class(stun_lab: StunLab, client: str) -> None:
    report = stun_lab.netcheck(client)
    nat_type, mapping, filtering = EXPECTED[client]
    assert report["udp"] is True and report["tcp"] is True, report
    assert (report["nat_type"], report["mapping"], report["filtering"]) == (
        nat_type,
        mapping,
        filtering,
    ), report
    assert report["public_address"].rsplit(":", 1)[0] == stun_lab.public_ip(client)


def test_netcheck_behind_a_udp_firewall_says_udp_blocked_tcp_works(stun_lab: StunLab) -> None:
    report = stun_lab.netcheck("blocked")
    assert report["udp"] is False
    assert report["tcp"] is True
    assert report["nat_type"] == "udp-blocked"
    assert report["nat_class"] == 6
    assert report["public_address"] is None


def test_netcheck_finds_ipv6_and_its_public_ipv6_address(stun_lab: StunLab) -> None:
    six = stun_lab.lab.host("six")
    report = stun_lab.netcheck("six", stun_lab.supernode6)
    assert report["ipv6"] is True
    assert report["public_address6"].startswith(f"[{six.address6}]:")  # routed, no NAT
    assert report["nat_type"] == "symmetric"  # its IPv4 NAT
    masq = stun_lab.netcheck("masq", stun_lab.supernode6)
    assert masq["ipv6"] is False and masq["public_address6"] is None


def test_netcheck_prints_a_table(stun_lab: StunLab) -> None:
    servers = [arg for sn in stun_lab.supernodes for arg in ("--server", sn)]
    out = stun_lab.lab.exec("masq", hopline_command("netcheck", *servers), timeout=60)
    assert "port-restricted" in out
    assert stun_lab.public_ip("masq") in out
    assert sys.executable and Path(sys.executable).exists()
