"""Fixtures for netlab tests: skip without root/nftables, one lab per test or per module.

Every test that builds a lab asks for ``netlab`` (directly or through ``lab``
or ``topology``): it skips with the reason when this machine cannot run
namespaces and nftables, and removes the leftovers of labs whose owner was
killed before the first lab is built.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopline.netlab import Lab, LabProcess, NatClass, cleanup_stale, unavailable_reason

REFLECTOR_PORT = 7000
CLASSES = {
    "pubc": NatClass.PUBLIC,
    "masq": NatClass.MASQUERADE,
    "cone": NatClass.FULL_CONE,
    "sym": NatClass.SYMMETRIC,
    "double": NatClass.DOUBLE_NAT,
    "blocked": NatClass.UDP_BLOCKED,
    "six": NatClass.IPV6,
}


@pytest.fixture(scope="session")
def netlab() -> None:
    """Skip unless netlab can run here; clear what killed test runs left behind."""
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"netlab needs root and nftables: {reason}")
    cleanup_stale()


@pytest.fixture
def lab(netlab: None, tmp_path: Path) -> Iterator[Lab]:
    """An empty lab, removed after the test (logs in tmp_path/lab)."""
    with Lab(tmp_path / "lab") as built:
        yield built


@dataclass
class Topology:
    """Two reflector servers and one client of every class."""

    lab: Lab
    reflector: LabProcess

    def target(self, server: str, v6: bool = False) -> str:
        host = self.lab.host(server)
        return f"[{host.address6}]:{REFLECTOR_PORT}" if v6 else f"{host.address}:{REFLECTOR_PORT}"

    def udp(self, client: str, *servers: str, reply: str = "same", v6: bool = False) -> dict:
        """Probe from ``client``: {"local": ..., "seen": [what each server saw, or None]}."""
        targets = [self.target(s, v6) for s in servers]
        out = self.lab.python(
            client,
            *("-m", "hopline.netlab.probe", "udp", *targets, "--reply", reply, "--timeout", "1.2"),
        )
        result = json.loads(out)
        return {"local": result["local"], "seen": [result["seen"][t] for t in targets]}

    def tcp(self, client: str, server: str) -> dict:
        out = self.lab.python(client, "-m", "hopline.netlab.probe", "tcp", self.target(server))
        return json.loads(out)


@pytest.fixture(scope="module")
def topology(netlab: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """A lab with reflectors on echo1/echo2 and clients pubc, masq, cone, sym, double,
    blocked, six (one per class)."""
    with Lab(tmp_path_factory.mktemp("topology")) as built:
        echo1, echo2 = built.add_server("echo1"), built.add_server("echo2")
        for name, nat in CLASSES.items():
            built.add_client(name, nat)
        listen = [
            f"{echo1.address}:{REFLECTOR_PORT}",
            f"{echo2.address}:{REFLECTOR_PORT}",
            f"[{echo1.address6}]:{REFLECTOR_PORT}",
            f"[{echo2.address6}]:{REFLECTOR_PORT}",
        ]
        reflector = built.run(
            "echo1", [sys.executable, "-m", "hopline.netlab.probe", "serve", *listen]
        )
        reflector.wait_ready()
        yield Topology(built, reflector)
