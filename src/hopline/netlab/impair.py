"""Lossy hosts for a lab: nftables drops a share of what a host sends and receives.

:class:`Loss` loads one table ``netdev Ploss`` (``P`` the lab's prefix, so
a lab's teardown removes it with the rest) into a client host's own
namespace, with an ``ingress`` and an ``egress`` chain on each of its
interfaces (loopback has none: programs on the host still reach their
local daemon)::

    meta l4proto udp counter name "in_seen"
        numgen random mod 1000 < 100 counter name "in_dropped" drop

``numgen random`` draws a fresh number for every packet, so each datagram
is lost independently with the given probability, in both directions,
whatever NAT the host sits behind. The drop happens at the interface, as
on a lossy link: the sender's ``sendto`` still succeeds (a rule on the
``output`` hook would fail it with EPERM, which no real network does). The
named counters say how many packets the rules saw and dropped
(:meth:`Loss.counters`), so a test can check the share it got.

``python -m hopline.netlab.impair burst HOST:PORT --count N`` (run in a lab
namespace) sends ``N`` numbered requests to a :mod:`hopline.netlab.probe`
reflector from one socket, waits for the answers and prints ``{"sent": N,
"answered": K, "malformed": 0}``: the end-to-end check that a loss rule
really loses datagrams on the way (both ways: ``K/N`` is about
``(1 - p)²``).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hopline.netlab.lab import Lab
from hopline.netlab.system import NetlabError, in_namespace
from hopline.wire import Address

__all__ = ["Loss", "LossCounters", "interfaces", "loss_ruleset", "main", "udp_burst"]

PROTOCOLS = frozenset({"udp", "tcp", "icmp", "ipv6-icmp"})
_DIRECTIONS = {"ingress": "in", "egress": "out"}


@dataclass(frozen=True)
class LossCounters:
    """Packets the loss rules of one host saw and dropped, per direction."""

    seen_in: int
    dropped_in: int
    seen_out: int
    dropped_out: int

    @property
    def share_in(self) -> float:
        """The share of inbound packets dropped (0 when none were seen)."""
        return self.dropped_in / self.seen_in if self.seen_in else 0.0

    @property
    def share_out(self) -> float:
        """The share of outbound packets dropped (0 when none were seen)."""
        return self.dropped_out / self.seen_out if self.seen_out else 0.0


def loss_ruleset(
    table: str,
    devices: list[str],
    percent: float,
    protocols: tuple[str, ...] | None = ("udp",),
) -> str:
    """The nft script of a loss table: drop ``percent`` % (0.1 % steps) of the packets
    of ``protocols`` (None: every packet) arriving at or leaving ``devices``."""
    if not 0 <= percent <= 100:
        raise ValueError(f"a loss is 0-100 %, not {percent}")
    if protocols is not None and (not protocols or not set(protocols) <= PROTOCOLS):
        raise ValueError(f"protocols are some of {sorted(PROTOCOLS)}, not {protocols}")
    if not devices:
        raise ValueError("a loss needs at least one interface")
    match = "" if protocols is None else f"meta l4proto {{ {', '.join(protocols)} }} "
    permille = round(percent * 10)
    lines = [f"table netdev {table} {{"]
    for short in _DIRECTIONS.values():
        lines += [f"  counter {short}_seen {{ }}", f"  counter {short}_dropped {{ }}"]
    for n, device in enumerate(devices):
        for hook, short in _DIRECTIONS.items():
            rule = (
                f'{match}counter name "{short}_seen" '
                f'numgen random mod 1000 < {permille} counter name "{short}_dropped" drop'
            )
            lines += [
                f"  chain {hook}{n} {{",
                f'    type filter hook {hook} device "{device}" priority filter; policy accept;',
                f"    {rule}",
                "  }",
            ]
    return "\n".join([*lines, "}"]) + "\n"


def interfaces(namespace: str) -> list[str]:
    """The names of a namespace's interfaces, loopback aside."""
    links = json.loads(in_namespace(namespace, ["ip", "-j", "link", "show"]).stdout)
    return [str(link["ifname"]) for link in links if link["ifname"] != "lo"]


class Loss:
    """A loss rule on one lab host; applied by :meth:`apply` or ``with``, gone on
    :meth:`remove` (or with the lab)."""

    def __init__(
        self,
        lab: Lab,
        host: str,
        percent: float,
        protocols: tuple[str, ...] | None = ("udp",),
    ) -> None:
        """Plan ``percent`` % loss of ``protocols`` (None: all) on the interfaces of the
        client host ``host`` (servers share the public namespace: NetlabError)."""
        found = lab.host(host)
        if found.nat is None:
            raise NetlabError(f"{host} is a server: its namespace is the public segment's")
        self.namespace = found.namespace
        self.table = f"{lab.prefix}loss"
        self.ruleset = loss_ruleset(self.table, interfaces(self.namespace), percent, protocols)
        self.percent, self.applied = percent, False

    def apply(self) -> Loss:
        """Load the table (NetlabError if the host already has one)."""
        if self.applied:
            raise NetlabError(f"loss is already applied in {self.namespace}")
        in_namespace(self.namespace, ["nft", "-f", "-"], stdin=self.ruleset)
        self.applied = True
        return self

    def remove(self) -> None:
        """Delete the table (idempotent)."""
        if self.applied:
            in_namespace(self.namespace, ["nft", "delete", "table", "netdev", self.table])
            self.applied = False

    def counters(self) -> LossCounters:
        """What the rules have seen and dropped so far."""
        argv = ["nft", "-j", "list", "counters", "table", "netdev", self.table]
        listing = json.loads(in_namespace(self.namespace, argv).stdout)
        packets = {
            item["counter"]["name"]: int(item["counter"]["packets"])
            for item in listing["nftables"]
            if "counter" in item
        }
        return LossCounters(
            packets["in_seen"], packets["in_dropped"], packets["out_seen"], packets["out_dropped"]
        )

    def __enter__(self) -> Loss:
        return self.apply()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()


def udp_burst(
    destination: Address, count: int, gap_s: float = 0.0005, linger_s: float = 1.0
) -> dict[str, Any]:
    """Send ``count`` numbered requests to a reflector; how many distinct ones came back
    (answers that are not the reflector's JSON are counted as ``malformed``)."""
    host, port = destination.as_tuple()
    family = socket.AF_INET6 if ":" in str(host) else socket.AF_INET
    answered: set[int] = set()
    malformed = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        for i in range(count):
            sock.sendto(json.dumps({"id": i}).encode(), (host, port))
            malformed += _drain(sock, answered)
            time.sleep(gap_s)
        deadline = time.monotonic() + linger_s
        while time.monotonic() < deadline:
            malformed += _drain(sock, answered)
            time.sleep(0.01)
    return {"sent": count, "answered": len(answered), "malformed": malformed}


def _drain(sock: socket.socket, answered: set[int]) -> int:
    """Take every answer waiting on ``sock``; returns how many were malformed."""
    malformed = 0
    while True:
        try:
            data = sock.recv(2048, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return malformed
        try:
            answered.add(int(json.loads(data)["id"]))
        except (ValueError, KeyError, TypeError):
            malformed += 1


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m hopline.netlab.impair")
    commands = parser.add_subparsers(dest="command", required=True)
    burst = commands.add_parser("burst", help="numbered UDP requests to a reflector")
    burst.add_argument("destination", type=Address.parse)
    burst.add_argument("--count", type=int, default=1000)
    burst.add_argument("--gap", type=float, default=0.0005, help="seconds between requests")
    args = parser.parse_args(argv)
    print(json.dumps(udp_burst(args.destination, args.count, args.gap)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
