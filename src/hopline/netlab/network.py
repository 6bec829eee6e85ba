"""A whole Hopline network inside a lab: login server, supernodes, clients and agents.

:class:`LabNetwork` puts real Hopline processes into a :class:`~hopline.netlab.Lab`:

* :meth:`LabNetwork.start` runs a login server and ``supernodes`` supernodes
  on the public segment (each listening for UDP and TCP on
  :data:`SUPERNODE_PORT` of its own 203.0.113.x address, with a metrics
  endpoint), joins them into one overlay and waits until every supernode
  sees every other;
* :meth:`LabNetwork.client` adds a client host of a given NAT class,
  registers and logs in a user there with the ``hopline`` command line (so
  the login-server calls cross the NAT exactly as a user's would) and starts
  :mod:`hopline.netlab.agent` for it, connected to a home supernode.

Tests and benchmarks share it (``tests/netlab``, ``benchmarks/nat.py``); the
agents are driven with :meth:`~hopline.netlab.LabProcess.request`.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hopline.demo.cluster import enrollment_token, hopline_command
from hopline.netlab.lab import Lab
from hopline.netlab.nat import NatClass
from hopline.netlab.process import LabProcess
from hopline.netlab.system import NetlabError

__all__ = ["PASSWORD", "SUPERNODE_PORT", "LabClient", "LabNetwork"]

PASSWORD = "correct horse battery staple"  # noqa: S105 (lab accounts only)
SUPERNODE_PORT = 33033
LS_PORT = 4433
METRICS_PORT = 9100
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
class LabClient:
    """A user logged in on a lab host, with its agent connected to a home supernode."""

    host: str
    user: str
    nat: NatClass
    agent: LabProcess
    home: dict[str, Any]  # the agent's answer to "connect"


@dataclass
class LabNetwork:
    """The processes of one Hopline network in ``lab`` (see the module docstring)."""

    lab: Lab
    workdir: Path
    ls: dict[str, Any] = field(default_factory=dict)  # the login server's ready line
    supernodes: list[str] = field(default_factory=list)  # their listen addresses
    metrics: list[str] = field(default_factory=list)  # their metrics endpoints
    clients: dict[str, LabClient] = field(default_factory=dict)  # by user

    def start(self, supernodes: int = 2, supernode_args: tuple[str, ...] = ()) -> None:
        """Start the login server and the supernodes; wait for the overlay."""
        ls_host = self.lab.add_server("ls")
        listen = f"{ls_host.address}:{LS_PORT}"
        args = ["loginserver", "--listen", listen, "--data-dir", str(self.workdir / "ls")]
        self.ls = self.lab.run("ls", hopline_command(*args), label="loginserver").wait_ready(30)
        for n in range(supernodes):
            self._start_supernode(n, supernode_args)
        self.lab.python("ls", "-c", WAIT_FOR_OVERLAY, *self.metrics)

    def _start_supernode(self, n: int, extra: tuple[str, ...]) -> None:
        name = f"sn{n}"
        host = self.lab.add_server(name)
        args = ["--metrics", f"{host.address}:{METRICS_PORT}", *extra]
        if self.supernodes:
            args += ["--join", self.supernodes[0]]
        ready = self.supernode(name, f"{host.address}:{SUPERNODE_PORT}", *args)
        self.supernodes.append(ready["listen"])
        self.metrics.append(ready["metrics"])

    def supernode(self, server: str, listen: str, *args: str) -> dict[str, Any]:
        """Enroll and start a supernode on the server host ``server``; its ready line."""
        argv = [
            *("supernode", "--listen", listen),
            *("--login-server", self.ls["listen"], "--ls-key", self.ls["public_key"]),
            *("--data-dir", str(self.workdir / server)),
            *("--enroll-token", enrollment_token(self.workdir / "ls")),
            *args,
        ]
        ready: dict[str, Any] = self.lab.run(
            server, hopline_command(*argv), label=server
        ).wait_ready(30)
        return ready

    def account(self, host: str, command: str, user: str) -> dict[str, Any]:
        """``hopline register|login USER --json`` run on ``host``."""
        password = self.workdir / f"{user}.password"  # one per user: accounts run in parallel
        password.write_text(PASSWORD + "\n")
        argv = hopline_command(
            *(command, user, "--profile", str(self.workdir / user)),
            *("--login-server", self.ls["listen"], "--ls-key", self.ls["public_key"]),
            *("--password-file", str(password), "--json"),
        )
        document: dict[str, Any] = json.loads(self.lab.exec(host, argv, timeout=90))
        return document

    def client(self, host: str, nat: NatClass, user: str | None = None) -> LabClient:
        """A new client host ``host`` of class ``nat`` with a logged-in, connected agent."""
        self.lab.add_client(host, nat)
        return self.enroll(host, nat, user or host)

    def clients_of(self, hosts: dict[str, NatClass], workers: int = 4) -> list[LabClient]:
        """Several clients at once (hosts are created first, accounts in parallel)."""
        for host, nat in hosts.items():
            self.lab.add_client(host, nat)
        with ThreadPoolExecutor(workers) as pool:
            futures = [pool.submit(self.enroll, host, nat, host) for host, nat in hosts.items()]
            return [future.result() for future in futures]

    def enroll(self, host: str, nat: NatClass, user: str) -> LabClient:
        """Register and log in ``user`` on an existing ``host``; start and connect its agent."""
        self.account(host, "register", user)
        self.account(host, "login", user)
        agent = self.agent(host, user)
        home = agent.request({"op": "connect"}, timeout=90)
        if not home.get("ok"):
            raise NetlabError(f"{user} on {host} could not go online: {home}")
        client = LabClient(host, user, nat, agent, home)
        self.clients[user] = client
        return client

    def user(self, host: str, nat: NatClass, user: str) -> None:
        """A new client host (unless it exists) with ``user`` registered and logged in."""
        if host not in self.lab.hosts:
            self.lab.add_client(host, nat)
        self.account(host, "register", user)
        self.account(host, "login", user)

    def daemon(self, host: str, user: str, *args: str) -> LabProcess:
        """``hopline up`` for ``user``'s profile on ``host``; returns once its API serves."""
        argv = hopline_command("up", "--profile", str(self.workdir / user), *args)
        daemon = self.lab.run(host, argv, label=f"daemon-{user}")
        daemon.wait_ready(30)
        return daemon

    def cli(self, host: str, user: str, *args: str, timeout: float = 60.0) -> str:
        """Run ``hopline ARGS --profile`` (``user``'s) on ``host``; its stdout."""
        argv = hopline_command(*args, "--profile", str(self.workdir / user))
        return self.lab.exec(host, argv, timeout=timeout)

    def start_cli(self, host: str, user: str, *args: str) -> LabProcess:
        """The same, in the background (a command that waits, such as ``answer --auto``)."""
        argv = hopline_command(*args, "--profile", str(self.workdir / user))
        return self.lab.run(host, argv, label=f"cli-{user}-{args[0]}")

    def agent(self, host: str, user: str, *args: str) -> LabProcess:
        """A logged-in session of ``user`` on ``host``, waiting for commands."""
        profile = str(self.workdir / user)
        argv = [sys.executable, "-m", "hopline.netlab.agent", "--profile", profile, *args]
        agent = self.lab.run(host, argv, label=f"agent-{user}")
        ready = agent.wait_ready(30)
        if ready.get("user") != user:
            raise NetlabError(f"agent on {host} is {ready.get('user')!r}, not {user!r}")
        return agent
