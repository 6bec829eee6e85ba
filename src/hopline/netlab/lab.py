"""A lab: namespaces, links and NAT rules, and the processes run inside them.

A :class:`Lab` builds, on demand, this topology (every name starts with the
lab's prefix ``P``, e.g. ``hnl3fa2c1``)::

    P-pub: bridge Pbr  203.0.113.1/24  2001:db8::1/64      the public segment
      |  servers (add_server): more addresses on Pbr, 203.0.113.10+k,
      |  2001:db8::(10+k); their processes run in P-pub itself
      |
      +- veth Pp<i> -- Pw<i> ... a client (add_client), 203.0.113.(100+i):
           public      Pw<i> is in the client's namespace P-NAME
           routed      Pw<i> is in the router P-NAME-r (its WAN); the client
                       P-NAME sits behind it on Pl<i> -- Pe<i>,
                       192.168.(i+1).0/24 (router .1, client .2)
           double-nat  Pw<i> is in the CGN P-NAME-c; 198.51.100.0/24 inside
                       (CGN .1, home router .2 on Pc<i> -- Ph<i>); the home
                       router P-NAME-r has the client on 10.(i+1).0.0/24
           ipv6        as routed, plus 2001:db8:(i+1)::/64 routed (no NAT)
                       through the router's 2001:db8::(100+i)

Each router namespace forwards and loads one nftables table ``Pnat`` from
:mod:`hopline.netlab.nat`. Veths are created directly between namespaces,
so nothing of a lab is in the root namespace.

Lifetime: a lab writes its owner file first (:mod:`hopline.netlab.system`),
then creates namespaces. :meth:`Lab.close` — also run by ``with``, by a
finalizer at interpreter exit, and on SIGTERM while inside ``with`` in the
main thread — stops the lab's processes (SIGTERM, then SIGKILL), kills
anything left in its namespaces, deletes its nftables tables and
namespaces and the owner file. A lab whose owner died without any of that
(SIGKILL) is removed by the next :func:`~hopline.netlab.system.cleanup_stale`.
"""

from __future__ import annotations

import shutil
import signal
import sys
import tempfile
import threading
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from hopline.netlab.nat import NatClass, cgn_ruleset, router_ruleset
from hopline.netlab.process import LabProcess
from hopline.netlab.system import (
    NetlabError,
    Owner,
    destroy,
    in_namespace,
    ip_batch,
    new_prefix,
    require,
    run,
    write_owner,
)

__all__ = ["Host", "Lab"]

PUBLIC_GATEWAY = "203.0.113.1"
PUBLIC_GATEWAY6 = "2001:db8::1"
MAX_SERVERS = 40
MAX_CLIENTS = 100


@dataclass(frozen=True)
class Host:
    """One place to run processes, and its addresses."""

    name: str
    namespace: str
    address: str  # its own IPv4 address (private behind a NAT)
    public_address: str  # the IPv4 address the public segment sees from it
    nat: NatClass | None  # None: a server on the public segment
    address6: str | None = None  # a global IPv6 address, if it has one
    routers: tuple[str, ...] = ()  # namespaces of its NAT routers, the nearest first

    def to_json(self) -> dict[str, Any]:
        """The host as a JSON object."""
        return {
            **asdict(self),
            "nat": None if self.nat is None else str(self.nat),
            "routers": list(self.routers),
        }


@dataclass
class _Resources:
    """What a lab must undo; kept apart from :class:`Lab` so its finalizer holds no Lab."""

    prefix: str
    workdir: Path
    remove_workdir: bool
    processes: list[LabProcess] = field(default_factory=list)
    created: bool = False  # the owner file exists, and perhaps namespaces

    def teardown(self) -> None:
        """Stop the processes, then delete the namespaces, whatever fails on the way."""
        try:
            self._stop_processes()
        finally:
            try:
                if self.created:
                    destroy(self.prefix)
            finally:
                if self.remove_workdir:
                    shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_processes(self) -> None:
        for proc in self.processes:
            if proc.alive():
                proc.signal(signal.SIGTERM)  # all at once: they share the grace period
        while self.processes:
            self.processes.pop().stop(grace=3.0)


class Lab:
    """A network of namespaces (see the module docstring)."""

    def __init__(self, workdir: Path | None = None, *, prefix: str | None = None) -> None:
        """Plan a lab (nothing is created before the first host); NetlabUnavailable if
        this machine cannot run one. Logs go to ``workdir`` (default: a temporary
        directory removed on close)."""
        require()
        self.prefix = prefix or new_prefix()
        temporary = workdir is None
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"{self.prefix}-")) if workdir is None else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._resources = _Resources(self.prefix, self.workdir, remove_workdir=temporary)
        self._finalizer = weakref.finalize(self, self._resources.teardown)
        self._hosts: dict[str, Host] = {}
        self._servers = 0
        self._clients = 0
        self._manual = False
        self._previous_sigterm: Any = None

    # ------------------------------------------------------------ lifetime

    def __enter__(self) -> Lab:
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self.close()
        raise KeyboardInterrupt

    def close(self) -> None:
        """Stop every process and remove every namespace, link and table (idempotent)."""
        self._finalizer()

    def detach(self) -> None:
        """Keep the lab after this process exits (``python -m hopline.netlab up``).

        Processes it started keep running; a temporary log directory is removed.
        """
        self._manual = True
        self._finalizer.detach()
        self._save()
        if self._resources.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ hosts

    @property
    def hosts(self) -> dict[str, Host]:
        """Every host by name."""
        return dict(self._hosts)

    def host(self, name: str) -> Host:
        """The host called ``name`` (KeyError if there is none)."""
        return self._hosts[name]

    def address(self, name: str) -> str:
        """The host's own IPv4 address."""
        return self.host(name).address

    def public_address(self, name: str) -> str:
        """The IPv4 address the public segment sees from the host (its NAT's)."""
        return self.host(name).public_address

    def namespace(self, name: str = "pub") -> str:
        """The namespace called ``P-name``."""
        return f"{self.prefix}-{name}"

    def add_server(self, name: str) -> Host:
        """An address on the public segment; the host's processes run in ``P-pub``."""
        self._check_name(name)
        if self._servers >= MAX_SERVERS:
            raise NetlabError(f"a lab has at most {MAX_SERVERS} servers")
        self._ensure_public_segment()
        k, self._servers = self._servers, self._servers + 1
        v4, v6 = f"203.0.113.{10 + k}", f"2001:db8::{10 + k}"
        bridge = f"{self.prefix}br"
        ip_batch(
            self.namespace(),
            [f"addr add {v4}/24 dev {bridge}", f"addr add {v6}/64 dev {bridge} nodad"],
        )
        return self._add(Host(name, self.namespace(), v4, v4, None, v6))

    def add_client(self, name: str, nat: NatClass | str) -> Host:
        """A client namespace ``P-name`` reaching the public segment as ``nat`` says."""
        nat = NatClass(nat)
        self._check_name(name)
        if self._clients >= MAX_CLIENTS:
            raise NetlabError(f"a lab has at most {MAX_CLIENTS} clients")
        self._ensure_public_segment()
        i, self._clients = self._clients, self._clients + 1
        if nat is NatClass.PUBLIC:
            return self._add(self._public_client(name, i))
        if nat is NatClass.DOUBLE_NAT:
            return self._add(self._double_nat_client(name, i))
        return self._add(self._routed_client(name, i, nat))

    def _check_name(self, name: str) -> None:
        if not name.isascii() or not name.isalnum() or not name[:1].isalpha() or len(name) > 12:
            raise ValueError(f"host names are 1-12 letters and digits, a letter first: {name!r}")
        if name == "pub" or name in self._hosts:
            raise ValueError(f"host name {name!r} is taken")

    def _add(self, host: Host) -> Host:
        self._hosts[host.name] = host
        self._save()
        return host

    def _save(self) -> None:
        hosts = {name: host.to_json() for name, host in self._hosts.items()}
        write_owner(self.prefix, Owner.me(manual=self._manual), hosts)
        self._resources.created = True

    # ------------------------------------------------------------ building

    def _ensure_public_segment(self) -> None:
        if self._resources.created:
            return
        self._save()  # the owner file first: a lab is never without one
        pub, bridge = self.namespace(), f"{self.prefix}br"
        run(["ip", "netns", "add", pub])
        ip_batch(
            pub,
            [
                "link set lo up",
                f"link add {bridge} type bridge",
                f"addr add {PUBLIC_GATEWAY}/24 dev {bridge}",
                f"addr add {PUBLIC_GATEWAY6}/64 dev {bridge} nodad",
                f"link set {bridge} up",
            ],
        )
        _sysctl(pub, "net.ipv6.conf.all.forwarding=1")

    def _new_namespace(self, name: str) -> str:
        namespace = self.namespace(name)
        run(["ip", "netns", "add", namespace])
        ip_batch(namespace, ["link set lo up"])
        return namespace

    def _uplink(self, namespace: str, i: int) -> str:
        """A veth from ``namespace`` (``Pw<i>``, returned) to the public bridge."""
        wan, port = f"{self.prefix}w{i}", f"{self.prefix}p{i}"
        _veth(namespace, wan, self.namespace(), port)
        ip_batch(
            self.namespace(), [f"link set {port} master {self.prefix}br", f"link set {port} up"]
        )
        return wan

    def _public_client(self, name: str, i: int) -> Host:
        namespace = self._new_namespace(name)
        wan = self._uplink(namespace, i)
        address = f"203.0.113.{100 + i}"
        ip_batch(namespace, [f"addr add {address}/24 dev {wan}", f"link set {wan} up"])
        return Host(name, namespace, address, address, NatClass.PUBLIC)

    def _routed_client(self, name: str, i: int, nat: NatClass) -> Host:
        router = self._new_namespace(f"{name}-r")
        wan = self._uplink(router, i)
        public = f"203.0.113.{100 + i}"
        ip_batch(router, [f"addr add {public}/24 dev {wan}", f"link set {wan} up"])
        client, address = self._lan(name, router, i, f"192.168.{i + 1}")
        self._nat(router, router_ruleset(f"{self.prefix}nat", nat, wan, address))
        address6 = self._ipv6_route(router, wan, client, i) if nat is NatClass.IPV6 else None
        return Host(name, client, address, public, nat, address6, (router,))

    def _double_nat_client(self, name: str, i: int) -> Host:
        cgn = self._new_namespace(f"{name}-c")
        wan = self._uplink(cgn, i)
        public = f"203.0.113.{100 + i}"
        inside, home_wan = f"{self.prefix}c{i}", f"{self.prefix}h{i}"
        router = self._new_namespace(f"{name}-r")
        _veth(cgn, inside, router, home_wan)
        ip_batch(
            cgn,
            [
                f"addr add {public}/24 dev {wan}",
                f"link set {wan} up",
                f"addr add 198.51.100.1/24 dev {inside}",
                f"link set {inside} up",
            ],
        )
        self._nat(cgn, cgn_ruleset(f"{self.prefix}nat", wan))
        ip_batch(
            router,
            [
                f"addr add 198.51.100.2/24 dev {home_wan}",
                f"link set {home_wan} up",
                "route add default via 198.51.100.1",
            ],
        )
        client, address = self._lan(name, router, i, f"10.{i + 1}.0")
        ruleset = router_ruleset(f"{self.prefix}nat", NatClass.DOUBLE_NAT, home_wan, address)
        self._nat(router, ruleset)
        return Host(name, client, address, public, NatClass.DOUBLE_NAT, None, (router, cgn))

    def _lan(self, name: str, router: str, i: int, net: str) -> tuple[str, str]:
        """The client namespace behind ``router`` on ``net``.0/24; (namespace, address)."""
        client = self._new_namespace(name)
        lan, eth = f"{self.prefix}l{i}", f"{self.prefix}e{i}"
        _veth(router, lan, client, eth)
        ip_batch(router, [f"addr add {net}.1/24 dev {lan}", f"link set {lan} up"])
        ip_batch(
            client,
            [
                f"addr add {net}.2/24 dev {eth}",
                f"link set {eth} up",
                f"route add default via {net}.1",
            ],
        )
        return client, f"{net}.2"

    def _nat(self, router: str, ruleset: str) -> None:
        _sysctl(router, "net.ipv4.ip_forward=1")
        in_namespace(router, ["nft", "-f", "-"], stdin=ruleset)

    def _ipv6_route(self, router: str, wan: str, client: str, i: int) -> str:
        """Route 2001:db8:(i+1)::/64 to ``client`` through ``router``; the client's address."""
        router_wan, net = f"2001:db8::{100 + i}", f"2001:db8:{i + 1}::"
        lan, eth = f"{self.prefix}l{i}", f"{self.prefix}e{i}"
        _sysctl(router, "net.ipv6.conf.all.forwarding=1")
        ip_batch(
            router,
            [
                f"addr add {router_wan}/64 dev {wan} nodad",
                f"addr add {net}1/64 dev {lan} nodad",
                f"route add ::/0 via {PUBLIC_GATEWAY6}",
            ],
        )
        ip_batch(client, [f"addr add {net}2/64 dev {eth} nodad", f"route add ::/0 via {net}1"])
        ip_batch(self.namespace(), [f"route add {net}/64 via {router_wan}"])
        return f"{net}2"

    # ------------------------------------------------------------ running things

    def run(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        label: str | None = None,
    ) -> LabProcess:
        """Start ``argv`` on host ``name``; the lab stops it on close.

        Its output is logged to ``workdir/LABEL.out`` and ``.err`` (``label``
        defaults to the host name and a number).
        """
        host = self.host(name)
        label = label or f"{name}-{len(self._resources.processes)}"
        proc = LabProcess.start(host.namespace, argv, self.workdir / label, env)
        self._resources.processes.append(proc)
        return proc

    def exec(
        self,
        name: str,
        argv: list[str],
        *,
        stdin: str | None = None,
        timeout: float = 60.0,
        check: bool = True,
    ) -> str:
        """Run ``argv`` on host ``name`` to completion and return its stdout."""
        return in_namespace(
            self.host(name).namespace, argv, stdin=stdin, timeout=timeout, check=check
        ).stdout

    def python(self, name: str, *args: str, timeout: float = 60.0) -> str:
        """Run this interpreter with ``args`` on host ``name``; return its stdout."""
        return self.exec(name, [sys.executable, *args], timeout=timeout)


def _veth(namespace_a: str, name_a: str, namespace_b: str, name_b: str) -> None:
    """A veth pair between two namespaces (never in the root namespace)."""
    ip_batch(namespace_a, [f"link add {name_a} type veth peer name {name_b} netns {namespace_b}"])


def _sysctl(namespace: str, setting: str) -> None:
    in_namespace(namespace, ["sysctl", "-q", "-w", setting])
