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

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hopline.demo.cluster import enrollment_token, hopline_command
from hopline.netlab import Lab, LabProcess, NatClass
from hopline.netlab.system import in_namespace
from hopline.wire import Address

PASSWORD = "correct horse battery staple"
SUPERNODE_PORT = 33033
WAIT_FOR_OVERLAY = """
import sys, time
from hopline.demo.walkthrough import members_seen
metrics = sys.argv[1:]
deadline = time.monotonic() + 40
while time.monotonic() < deadline:
    seen = [members_seen(m) for m in metrics]
    if all(count == len(metrics) for count in seen):
        sys.exit(0)
    time.sleep(0.2)
sys.exit(f"overlay did not converge: members seen {seen}")
"""


@dataclass
class Network:
    """The lab, the login server's ready line and the supernodes' listen addresses."""

    lab: Lab
    workdir: Path
    ls: dict[str, Any]
    supernodes: list[str]

    def account(self, client: str, command: str, user: str) -> dict[str, Any]:
        """``hopline register|login USER --json`` run on ``client``."""
        password = self.workdir / "password"
        password.write_text(PASSWORD + "\n")
        argv = hopline_command(
            *(command, user, "--profile", str(self.workdir / user)),
            *("--login-server", self.ls["listen"], "--ls-key", self.ls["public_key"]),
            *("--password-file", str(password), "--json"),
        )
        return json.loads(self.lab.exec(client, argv, timeout=60))

    def agent(self, client: str, user: str) -> LabProcess:
        """A logged-in session of ``user`` on ``client``, waiting for commands."""
        argv = [sys.executable, "-m", "hopline.netlab.agent", "--profile", str(self.workdir / user)]
        agent = self.lab.run(client, argv, label=f"agent-{user}")
        assert agent.wait_ready()["user"] == user
        return agent


@pytest.fixture
def network(lab: Lab, tmp_path: Path) -> Iterator[Network]:
    """Login server and two supernodes on the public segment; clients blocked and masq."""
    ls_host = lab.add_server("ls")
    listen = f"{ls_host.address}:4433"
    ls_args = ["loginserver", "--listen", listen, "--data-dir", str(tmp_path / "ls")]
    ls = lab.run("ls", hopline_command(*ls_args), label="loginserver").wait_ready(30)
    supernodes: list[str] = []
    metrics: list[str] = []
    for n in range(2):
        host = lab.add_server(f"sn{n}")
        args = [
            *("supernode", "--listen", f"{host.address}:{SUPERNODE_PORT}"),
            *("--login-server", ls["listen"], "--ls-key", ls["public_key"]),
            *("--data-dir", str(tmp_path / f"sn{n}")),
            *("--enroll-token", enrollment_token(tmp_path / "ls")),
            *("--metrics", f"{host.address}:9100"),
        ]
        if supernodes:
            args += ["--join", supernodes[0]]
        ready = lab.run(f"sn{n}", hopline_command(*args), label=f"sn{n}").wait_ready(30)
        supernodes.append(ready["listen"])
        metrics.append(ready["metrics"])
    lab.python("ls", "-c", WAIT_FOR_OVERLAY, *metrics)
    lab.add_client("blocked", NatClass.UDP_BLOCKED)
    lab.add_client("masq", NatClass.MASQUERADE)
    yield Network(lab, tmp_path, ls, supernodes)


def udp_dropped(lab: Lab, client: str) -> int:
    """Packets the client's firewall has dropped (the counter of its UDP rule)."""
    router = lab.host(client).routers[0]
    chain = ["nft", "list", "chain", "ip", f"{lab.prefix}nat", "forward"]
    found = re.search(r"counter packets (\d+)", in_namespace(router, chain).stdout)
    assert found is not None
    return int(found.group(1))


def test_udp_blocked_client_goes_online_over_tcp_and_finds_a_masquerade_client(
    network: Network,
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
    assert [e["address"] for e in found["endpoints"]] == [str(observed)]  # its mapped address

    back = masky.request({"op": "lookup", "user": "blocky"})
    assert back["ok"] and back["state"] == "online", back
    assert [e["address"] for e in back["endpoints"]] == [home["observed"]]

    for agent in (blocky, masky):
        assert agent.request({"op": "close"})["closed"]
        assert agent.wait(10) == 0
