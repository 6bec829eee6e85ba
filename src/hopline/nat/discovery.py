"""NAT behaviour discovery against supernodes' STUN ports (RFC 5780), sans-I/O.

:class:`NatDiscovery` runs the RFC 5780 tests and says what it learned in a
:class:`NatReport`. It never touches a socket or a clock:
:meth:`~NatDiscovery.datagrams_to_send` gives ``(datagram, address,
socket)`` triples, :meth:`~NatDiscovery.receive` takes what came back (and
on which socket),
:meth:`~NatDiscovery.get_timer` / :meth:`~NatDiscovery.handle_timer` drive
retransmissions. :mod:`hopline.nat.netcheck` is its asyncio shell.

The tests use two local UDP sockets. A datagram sent to a server opens the
NAT's filter for that server, and an unsolicited datagram arriving at a
mapping leaves state in the NAT (Linux conntrack then will not reuse the
mapping's port towards that sender), so mapping and filtering are measured
on different sockets, each with its own mapping:

1. **Binding** to server A (the first IPv4 server; if it is silent, the next
   one) from socket 0: UDP works, the public address X1, and A's
   OTHER-ADDRESS (its partner supernode, or its alternate port). No answer
   from any server: UDP is blocked.
2. **Mapping**, from socket 0, two requests at once: to a server B on
   another IP (the second IPv4 server given, else A's OTHER-ADDRESS) and to
   A's alternate port (OTHER-ADDRESS when A has no partner, else A's port +
   1, the supernode default). X(B) = X1 means endpoint-independent mapping;
   otherwise X(A alternate) = X1 means address-dependent, else
   address-and-port-dependent.
3. **Filtering**, from socket 1, at the same time: a Binding request to A
   (which opens the filter for A only), then two requests to A at once:
   CHANGE-REQUEST change-IP+port (answered by A's partner supernode) and
   change-port (answered from A's alternate port). The first arriving (from
   another IP) means endpoint-independent filtering; only the second
   arriving means address-dependent; neither means
   address-and-port-dependent. An error response (420) means the server
   cannot run that test; the result is then ``unknown`` where it matters.

An IPv6 server, if given, gets one Binding request in parallel (its
answer is the public IPv6 address). Each request is retransmitted after
100, 200 and 400 ms and given up after 1.5 s in all (RFC 8489 timing,
shortened: :class:`DiscoveryConfig`), so even with UDP blocked the whole run
ends within a few seconds. The report's ``nat_type`` condenses mapping and
filtering into the classic classes (:class:`NatType`, the presence record's
``nat_class``); a public address equal to a local one is ``open``.
"""

from __future__ import annotations

import ipaddress
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from hopline.nat.stun import (
    BINDING,
    Addr,
    ChangeRequest,
    MessageClass,
    StunError,
    StunMessage,
    decode,
    encode,
    is_stun,
)

__all__ = [
    "ADDRESS_AND_PORT_DEPENDENT",
    "ADDRESS_DEPENDENT",
    "ENDPOINT_INDEPENDENT",
    "UNKNOWN",
    "DiscoveryConfig",
    "NatDiscovery",
    "NatReport",
    "NatType",
    "format_addr",
]

ENDPOINT_INDEPENDENT = "endpoint-independent"
ADDRESS_DEPENDENT = "address-dependent"
ADDRESS_AND_PORT_DEPENDENT = "address-and-port-dependent"
UNKNOWN = "unknown"
MAPPING_SOCKET, FILTERING_SOCKET = 0, 1
_ULA = ipaddress.ip_network("fc00::/7")


class NatType(IntEnum):
    """The classic NAT classes (the presence record's ``nat_class``)."""

    UNKNOWN = 0
    OPEN = 1  # no NAT: the public address is a local one
    FULL_CONE = 2  # endpoint-independent mapping and filtering
    RESTRICTED = 3  # endpoint-independent mapping, address-dependent filtering
    PORT_RESTRICTED = 4  # endpoint-independent mapping, address-and-port-dependent filtering
    SYMMETRIC = 5  # mapping depends on the destination
    UDP_BLOCKED = 6  # no STUN answer at all over UDP


def format_addr(address: Addr) -> str:
    """``host:port``, with brackets around an IPv6 host."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _version(address: Addr) -> int:
    try:
        return ipaddress.ip_address(address[0]).version
    except ValueError:
        return 0


def _global6(host: str) -> bool:
    """An IPv6 address others can route to (documentation addresses included)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if not isinstance(ip, ipaddress.IPv6Address) or ip.ipv4_mapped is not None:
        return False
    return not (
        ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast or ip in _ULA
    )


@dataclass(frozen=True)
class NatReport:
    """What discovery learned (``None``: not tested)."""

    udp: bool
    public_address: Addr | None
    public_address6: Addr | None
    local_addresses: tuple[Addr, ...]
    mapping: str
    filtering: str
    port_preserving: bool | None
    nat_type: NatType
    tcp: bool | None
    ipv6: bool
    rtts: dict[str, float] = field(default_factory=dict)  # server -> milliseconds
    tests: dict[str, str | None] = field(default_factory=dict)  # test -> mapped address seen
    upload_bps: int | None = None  # measured by a packet train (hopline.nat.upload), if run

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready document."""
        return {
            "udp": self.udp,
            "tcp": self.tcp,
            "nat_type": self.nat_type.name.lower().replace("_", "-"),
            "nat_class": int(self.nat_type),
            "mapping": self.mapping,
            "filtering": self.filtering,
            "public_address": format_addr(self.public_address) if self.public_address else None,
            "public_address6": (
                format_addr(self.public_address6) if self.public_address6 else None
            ),
            "port_preserving": self.port_preserving,
            "ipv6": self.ipv6,
            "local_addresses": [format_addr(a) for a in self.local_addresses],
            "rtt_ms": dict(self.rtts),
            "tests": dict(self.tests),
            "upload_bps": self.upload_bps,
        }


@dataclass(frozen=True)
class DiscoveryConfig:
    """Retransmission timing: sends at 0, rto, 3 rto, 7 rto, ... (``transmissions``
    in all); a test fails ``timeout`` seconds after its first send."""

    rto: float = 0.1
    transmissions: int = 4
    timeout: float = 1.5
    alt_port_offset: int = 1  # a supernode's alternate STUN port, unless told otherwise


@dataclass
class _Test:
    """One STUN transaction."""

    name: str
    destination: Addr
    change: ChangeRequest
    txid: bytes
    started: float
    sends: int = 0
    last_sent: float = 0.0
    done: bool = False
    mapped: Addr | None = None
    source: Addr | None = None
    other: Addr | None = None
    error: int | None = None
    socket: int = MAPPING_SOCKET

    @property
    def answered(self) -> bool:
        return self.mapped is not None


class NatDiscovery:
    """The RFC 5780 tests against ``servers`` (STUN addresses), from two sockets.

    Datagrams carry a socket number: :data:`MAPPING_SOCKET` (0) for the
    Binding and mapping tests (and IPv6), :data:`FILTERING_SOCKET` (1, IPv4)
    for the filtering tests. ``local_addresses`` are socket 0's own
    addresses (IP and bound port, per family) to tell "no NAT" and port
    preservation; ``txid`` makes transaction ids (tests pass a deterministic
    one).
    """

    def __init__(
        self,
        servers: Sequence[Addr],
        *,
        now: float,
        local_addresses: Sequence[Addr] = (),
        config: DiscoveryConfig | None = None,
        txid: Callable[[], bytes] | None = None,
    ) -> None:
        """Start: the first Binding requests go out on the next datagrams_to_send()."""
        self.config = config or DiscoveryConfig()
        self.local_addresses = tuple(local_addresses)
        self.dropped: Counter[str] = Counter()
        self._servers4 = [s for s in servers if _version(s) == 4]
        self._server6 = next((s for s in servers if _version(s) == 6), None)
        self._txid = txid or (lambda: os.urandom(12))
        self._tests: dict[bytes, _Test] = {}
        self._named: dict[str, _Test] = {}
        self._phase = "binding"
        self._tried = 0
        self._rtts: dict[str, float] = {}
        self.result: NatReport | None = None
        if self._server6 is not None:
            self._start("binding6", self._server6, ChangeRequest.NONE, now)
        self._next_binding(now)
        self._advance(now)  # no servers at all: the (empty) report is ready at once

    # ------------------------------------------------------------ sans-I/O API

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr, int]]:
        """Requests due at ``now`` (first sends and retransmissions): (datagram, to, socket)."""
        out: list[tuple[bytes, Addr, int]] = []
        for test in self._tests.values():
            due = test.sends < self.config.transmissions and now >= self._send_time(test)
            if due and not test.done:
                out.append((self._request(test), test.destination, test.socket))
                test.sends += 1
                test.last_sent = now
        return out

    def get_timer(self) -> float | None:
        """When to call handle_timer (None: finished)."""
        times = []
        for test in self._tests.values():
            if not test.done:
                times.append(test.started + self.config.timeout)
                if test.sends < self.config.transmissions:
                    times.append(self._send_time(test))
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Give up on tests past their timeout; move on when a phase is complete."""
        for test in self._tests.values():
            if not test.done and now >= test.started + self.config.timeout:
                test.done = True
        self._advance(now)

    def receive(self, data: bytes, source: Addr, now: float, socket: int = 0) -> bool:
        """A datagram that arrived on ``socket``; False if it is not STUN (not ours)."""
        if not is_stun(data):
            return False
        try:
            message = decode(data)
        except StunError as exc:
            self.dropped[exc.reason] += 1
            return True
        test = self._tests.get(message.transaction_id)
        if test is None or test.done or test.socket != socket or message.method != BINDING:
            self.dropped["unexpected"] += 1
            return True
        self._record(test, message, source, now)
        self._advance(now)
        return True

    @property
    def done(self) -> bool:
        """Whether :attr:`result` is ready."""
        return self.result is not None

    # ------------------------------------------------------------ transactions

    def _start(
        self,
        name: str,
        destination: Addr,
        change: ChangeRequest,
        now: float,
        socket: int = MAPPING_SOCKET,
    ) -> None:
        test = _Test(name, destination, change, self._txid(), now, socket=socket)
        self._tests[test.txid] = test
        self._named[name] = test

    def _send_time(self, test: _Test) -> float:
        return test.started + self.config.rto * float((1 << test.sends) - 1)

    def _request(self, test: _Test) -> bytes:
        change = test.change if test.change else None
        message = StunMessage(
            BINDING, MessageClass.REQUEST, test.txid, change_request=change, fingerprint=True
        )
        return encode(message)

    def _record(self, test: _Test, message: StunMessage, source: Addr, now: float) -> None:
        if message.message_class is MessageClass.SUCCESS:
            mapped = message.xor_mapped_address or message.mapped_address
            if mapped is None:
                self.dropped["no-mapped-address"] += 1
                return
            test.mapped, test.source, test.other = mapped, source, message.other_address
            sent = test.started if test.sends == 1 else test.last_sent
            rtt = round((now - sent) * 1000, 1)
            key = format_addr(source)
            self._rtts[key] = min(rtt, self._rtts.get(key, rtt))
        elif message.message_class is MessageClass.ERROR:
            test.error = message.error_code[0] if message.error_code else 400
        else:
            self.dropped["not-a-response"] += 1
            return
        test.done = True

    # ------------------------------------------------------------ phases

    def _advance(self, now: float) -> None:
        if self._phase == "binding":
            self._after_binding(now)
        if self._phase == "probing":
            self._after_filter_binding(now)
        if self._phase == "filtering" and all(t.done for t in self._tests.values()):
            self._phase = "finished"
        if self._phase == "finished" and all(t.done for t in self._tests.values()):
            self.result = self._report()

    def _next_binding(self, now: float) -> None:
        if self._tried < min(2, len(self._servers4)):
            self._start("binding", self._servers4[self._tried], ChangeRequest.NONE, now)
            self._tried += 1
        else:
            self._phase = "finished"

    def _after_binding(self, now: float) -> None:
        primary = self._named.get("binding")
        if primary is not None and not primary.done:
            return
        if primary is None or not primary.answered:
            self._next_binding(now)
            return
        self._phase = "probing"
        a = primary.destination
        other = self._other_server(a)
        if other is not None:
            self._start("other-address", other, ChangeRequest.NONE, now)
        self._start("alternate-port", (a[0], self._alternate_port(a)), ChangeRequest.NONE, now)
        self._start("filter-binding", a, ChangeRequest.NONE, now, FILTERING_SOCKET)

    def _after_filter_binding(self, now: float) -> None:
        fresh = self._named["filter-binding"]
        if not fresh.done:
            return
        self._phase = "filtering"
        if fresh.answered:
            a, both = fresh.destination, ChangeRequest.IP | ChangeRequest.PORT
            self._start("change-ip-port", a, both, now, FILTERING_SOCKET)
            self._start("change-port", a, ChangeRequest.PORT, now, FILTERING_SOCKET)

    def _other_server(self, a: Addr) -> Addr | None:
        given = [s for s in self._servers4 if s[0] != a[0]]
        other = self._named["binding"].other
        if other is not None and other[0] != a[0] and _version(other) == 4:
            given.append(other)
        return given[0] if given else None

    def _alternate_port(self, a: Addr) -> int:
        other = self._named["binding"].other
        if other is not None and other[0] == a[0] and other[1] != a[1]:
            return other[1]
        return (a[1] + self.config.alt_port_offset) % 0x10000

    # ------------------------------------------------------------ conclusions

    def _report(self) -> NatReport:
        primary = self._named.get("binding")
        x1 = primary.mapped if primary is not None else None
        v6 = self._named.get("binding6")
        x6 = v6.mapped if v6 is not None else None
        mapping, filtering = self._mapping(x1), self._filtering(self._named.get("filter-binding"))
        return NatReport(
            udp=x1 is not None or x6 is not None,
            public_address=x1,
            public_address6=x6,
            local_addresses=self.local_addresses,
            mapping=mapping,
            filtering=filtering,
            port_preserving=self._port_preserving(x1),
            nat_type=self._nat_type(x1, x6, mapping, filtering),
            tcp=None,
            ipv6=x6 is not None or any(_global6(a[0]) for a in self.local_addresses),
            rtts=dict(self._rtts),
            tests={
                name: format_addr(t.mapped) if t.mapped else None for name, t in self._named.items()
            },
        )

    def _mapping(self, x1: Addr | None) -> str:
        if x1 is None:
            return UNKNOWN
        other, alternate = self._named.get("other-address"), self._named.get("alternate-port")
        x_alt = alternate.mapped if alternate is not None else None
        if other is not None and other.mapped is not None:
            if other.mapped == x1:
                return ENDPOINT_INDEPENDENT
            if x_alt is None:
                return UNKNOWN
            return ADDRESS_DEPENDENT if x_alt == x1 else ADDRESS_AND_PORT_DEPENDENT
        if x_alt is not None and x_alt != x1:
            return ADDRESS_AND_PORT_DEPENDENT
        return UNKNOWN

    def _filtering(self, primary: _Test | None) -> str:
        ip_port, port = self._named.get("change-ip-port"), self._named.get("change-port")
        if primary is None or ip_port is None or port is None or not primary.answered:
            return UNKNOWN
        a = primary.destination
        if ip_port.source is not None and ip_port.source[0] != a[0]:
            return ENDPOINT_INDEPENDENT
        other_port = [t for t in (ip_port, port) if t.source is not None and t.source[0] == a[0]]
        other = primary.other
        eif_testable = ip_port.error is None and other is not None and other[0] != a[0]
        if any(t.source != a for t in other_port):
            return ADDRESS_DEPENDENT if eif_testable else UNKNOWN
        if port.error is None and not port.answered:
            return ADDRESS_AND_PORT_DEPENDENT
        return UNKNOWN

    def _port_preserving(self, x1: Addr | None) -> bool | None:
        ports = {a[1] for a in self.local_addresses if _version(a) == 4}
        if x1 is None or not ports:
            return None
        return x1[1] in ports

    def _nat_type(self, x1: Addr | None, x6: Addr | None, mapping: str, filtering: str) -> NatType:
        if x1 is None:
            return NatType.UNKNOWN if x6 is not None else NatType.UDP_BLOCKED
        if x1 in self.local_addresses:
            return NatType.OPEN
        if mapping == ENDPOINT_INDEPENDENT:
            return {
                ENDPOINT_INDEPENDENT: NatType.FULL_CONE,
                ADDRESS_DEPENDENT: NatType.RESTRICTED,
                ADDRESS_AND_PORT_DEPENDENT: NatType.PORT_RESTRICTED,
            }.get(filtering, NatType.UNKNOWN)
        other = self._named.get("other-address")
        if mapping != UNKNOWN or (other is not None and other.mapped not in (None, x1)):
            return NatType.SYMMETRIC
        return NatType.UNKNOWN
