"""The STUN Binding service of a supernode: a sans-I/O responder and its asyncio shell.

Every supernode answers STUN Binding requests (RFC 8489) on its main UDP
port, the same port that carries Hopline's secure connections, so standard
STUN clients work against it. The two kinds of traffic are told apart by
their first bytes (:func:`hopline.nat.stun.is_stun`): a Hopline handshake
init starts with 0xE1 and every other Hopline datagram is first offered to
its connection, so the endpoint only shows this service what nobody else
took (:attr:`hopline.runtime.endpoint.Endpoint.raw_handler`).

:class:`StunResponder` is the decision function. Given a datagram, its
source and the port it arrived on, it returns one frozen decision:

* :class:`Reply` — a Binding success (XOR-MAPPED-ADDRESS and MAPPED-ADDRESS
  of the source, RESPONSE-ORIGIN, OTHER-ADDRESS, SOFTWARE, FINGERPRINT) or
  error response, to be sent to the request's source from the primary or the
  alternate port;
* :class:`Reflect` — a CHANGE-REQUEST change-IP: a partner supernode must
  answer from its own address (the shell sends it a ``nat.reflect`` notice,
  :mod:`hopline.wire.nat`, and the partner's responder turns it into a
  :class:`Reply` with :meth:`StunResponder.reflect`);
* :class:`Drop` — counted under its reason (the supernode's metrics show
  them as ``stun:<reason>``);
* :class:`NotStun` — not ours: the shell passes the datagram on.

Rules: only a valid Binding request is ever answered; an answer only ever
goes to the request's source address (RESPONSE-PORT is ignored, so the
service cannot be aimed at a third party); answers are rate-limited per
source IP by a token bucket, in a table of bounded size (the least recently
seen source is forgotten first); a request with unknown
comprehension-required attributes gets 420. CHANGE-REQUEST change-port is
answered from the *alternate port* (by default the main port + 1,
``--stun-alt-port``, 0 = none). Change-IP is answered by the partner: the
next live supernode after this one in node-id order whose address family
matches the client; OTHER-ADDRESS names that partner, or the alternate port
when there is no partner. A change that cannot be honoured gets error 420
listing CHANGE-REQUEST, from the port the request arrived on, so a client
can tell "unsupported" from "filtered". The partner rate-limits the targets
of ``nat.reflect`` with the same per-IP buckets.

Classic RFC 3489 Binding requests (no magic cookie, a 16-byte transaction
id; Debian's ``stun`` client sends them) get a classic answer
(MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS; :func:`classic_request`,
:func:`classic_response`) under the same rules; a change they ask for that
cannot be made is dropped (RFC 3489 has no 420 for it).

:class:`StunService` is the shell: it owns the alternate port's socket,
installs itself as the endpoint's raw handler (chaining to any previous
one) and datagram handler (for ``nat.reflect`` from certified supernodes,
chaining likewise), and refreshes the partner list from the overlay.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from hopline.connection import Expectation
from hopline.identity import Role
from hopline.nat.stun import (
    BINDING,
    HEADER_SIZE,
    MAX_MESSAGE_SIZE,
    TRANSACTION_ID_SIZE,
    Addr,
    AttributeType,
    ChangeRequest,
    MessageClass,
    StunError,
    StunMessage,
    decode,
    encode,
    is_stun,
)
from hopline.relay.bucket import TokenBucket
from hopline.runtime.endpoint import ConnectError, ConnectionLost, Endpoint, PeerConnection
from hopline.wire import Address, WireError, read_header
from hopline.wire import decode as wire_decode
from hopline.wire import encode as wire_encode
from hopline.wire.nat import NAT_REFLECT, NatReflect

__all__ = [
    "Decision",
    "Drop",
    "NotStun",
    "Port",
    "Reflect",
    "Reply",
    "StunConfig",
    "StunResponder",
    "StunService",
    "classic_request",
    "classic_response",
    "partners_after",
]

log = logging.getLogger("hopline.stun")
SOFTWARE = "hopline"
PARTNER_REFRESH_S = 1.0
CONNECT_TIMEOUT_S = 3.0


class Port(Enum):
    """Which of the service's two UDP ports a datagram uses."""

    PRIMARY = "primary"
    ALTERNATE = "alternate"

    @property
    def other(self) -> Port:
        """The other port."""
        return Port.ALTERNATE if self is Port.PRIMARY else Port.PRIMARY


@dataclass(frozen=True)
class Reply:
    """Send ``datagram`` to ``to`` (always a request's source) from port ``via``."""

    datagram: bytes
    to: Addr
    via: Port


@dataclass(frozen=True)
class Reflect:
    """Ask supernode ``partner`` to answer ``transaction_id`` to ``target`` itself."""

    partner: Addr
    target: Addr
    transaction_id: bytes


@dataclass(frozen=True)
class Drop:
    """Nothing to send; count ``reason``."""

    reason: str


@dataclass(frozen=True)
class NotStun:
    """Not a STUN message: somebody else's datagram."""


Decision = Reply | Reflect | Drop | NotStun


@dataclass(frozen=True)
class StunConfig:
    """Rate limits: ``rate`` answers per second per source IP, ``burst`` banked,
    buckets for at most ``max_sources`` IPs."""

    rate: float = 20.0
    burst: float = 40.0
    max_sources: int = 4096
    software: str = SOFTWARE


def _family(address: Addr) -> int:
    try:
        return ipaddress.ip_address(address[0]).version
    except ValueError:
        return 0


def _usable(address: Addr | None) -> Addr | None:
    """``address`` unless it is a wildcard (0.0.0.0, ::), which tells a client nothing."""
    if address is None:
        return None
    try:
        return None if ipaddress.ip_address(address[0]).is_unspecified else address
    except ValueError:
        return None


class StunResponder:
    """The Binding decision function of one supernode (sans-I/O).

    ``primary`` and ``alternate`` are the addresses clients reach the two
    ports at (``alternate`` None: no alternate port). :attr:`partners` is set
    by the shell: partner supernodes' STUN addresses, the preferred first.
    """

    def __init__(
        self,
        primary: Addr | None,
        alternate: Addr | None = None,
        config: StunConfig | None = None,
    ) -> None:
        """A responder for a node reached at ``primary`` (and ``alternate``)."""
        self.primary, self.alternate = _usable(primary), _usable(alternate)
        self.has_alternate = alternate is not None
        self.config = config or StunConfig()
        self.partners: list[Addr] = []
        self.dropped: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    # ------------------------------------------------------------ requests

    def request(self, data: bytes, source: Addr, port: Port, now: float) -> Decision:
        """Decide what to do with ``data`` from ``source`` that arrived on ``port``."""
        if not is_stun(data):
            return self._classic(data, source, port, now)
        try:
            message = decode(data)
        except StunError as exc:
            return self._drop(exc.reason)
        if not message.is_binding_request:
            return self._drop("not-binding-request")
        if not self._allow(source[0], now):
            return self._drop("rate-limited")
        return self._answer(message, source, port)

    def _answer(self, message: StunMessage, source: Addr, port: Port) -> Decision:
        if message.unknown_required:
            return self._error(message, source, port, 420, message.unknown_required)
        change = message.change_request or ChangeRequest.NONE
        if change & ChangeRequest.IP:
            return self._reflect(message, source, port)
        if not change & ChangeRequest.PORT:
            return self._success(message.transaction_id, source, port, "binding")
        if not self.has_alternate:
            return self._error(message, source, port, 420, (AttributeType.CHANGE_REQUEST,))
        return self._success(message.transaction_id, source, port.other, "change-port")

    def _reflect(self, message: StunMessage, source: Addr, port: Port) -> Decision:
        partner = self.partner_for(source)
        if partner is None:
            return self._error(message, source, port, 420, (AttributeType.CHANGE_REQUEST,))
        self.answered["reflect-asked"] += 1
        return Reflect(partner, source, message.transaction_id)

    def _classic(self, data: bytes, source: Addr, port: Port, now: float) -> Decision:
        """An RFC 3489 Binding request (no magic cookie, 16-byte id), as old clients send."""
        parsed = classic_request(data)
        if parsed is None:
            return NotStun()
        txid, change = parsed
        if not self._allow(source[0], now):
            return self._drop("rate-limited")
        if change & ChangeRequest.IP:
            partner = self.partner_for(source)
            if partner is None:
                return self._drop("classic-change-ip")
            self.answered["reflect-asked"] += 1
            return Reflect(partner, source, txid)
        if change & ChangeRequest.PORT:
            if not self.has_alternate:
                return self._drop("classic-change-port")
            port = port.other
        return self._classic_success(txid, source, port, "binding")

    def _classic_success(self, txid: bytes, source: Addr, via: Port, kind: str) -> Reply:
        origin = self.primary if via is Port.PRIMARY else self.alternate
        datagram = classic_response(txid, source, origin, self._other_address(source))
        self.answered[kind] += 1
        return Reply(datagram, source, via)

    def reflect(self, target: Addr, transaction_id: bytes, now: float) -> Reply | Drop:
        """A partner asked us to answer ``transaction_id`` to ``target`` from our primary port
        (a 16-byte id: an RFC 3489 client)."""
        classic = len(transaction_id) == CLASSIC_ID_SIZE
        if not (classic or len(transaction_id) == TRANSACTION_ID_SIZE) or _family(target) == 0:
            return self._drop("bad-reflect")
        if not self._allow(target[0], now):
            return self._drop("rate-limited")
        if classic:
            return self._classic_success(transaction_id, target, Port.PRIMARY, "reflected")
        return self._success(transaction_id, target, Port.PRIMARY, "reflected")

    def partner_for(self, client: Addr) -> Addr | None:
        """The first partner whose address family is the client's, if any."""
        family = _family(client)
        return next((p for p in self.partners if _family(p) == family), None)

    # ------------------------------------------------------------ answers

    def _success(self, txid: bytes, source: Addr, via: Port, kind: str) -> Reply | Drop:
        origin = self.primary if via is Port.PRIMARY else self.alternate
        response = StunMessage(
            BINDING,
            MessageClass.SUCCESS,
            txid,
            mapped_address=source,
            xor_mapped_address=source,
            response_origin=origin,
            other_address=self._other_address(source),
            software=self.config.software,
            fingerprint=True,
        )
        try:
            datagram = encode(response)
        except StunError as exc:  # an address the codec cannot write (not IP)
            return self._drop(exc.reason)
        self.answered[kind] += 1
        return Reply(datagram, source, via)

    def _other_address(self, client: Addr) -> Addr | None:
        partner = self.partner_for(client)
        return partner if partner is not None else self.alternate

    def _error(
        self, message: StunMessage, source: Addr, via: Port, code: int, types: Sequence[int]
    ) -> Reply:
        response = StunMessage(
            BINDING,
            MessageClass.ERROR,
            message.transaction_id,
            error_code=(code, "Unknown Attribute"),
            unknown_attributes=tuple(types),
            software=self.config.software,
            fingerprint=True,
        )
        self.answered["error"] += 1
        return Reply(encode(response), source, via)

    def _drop(self, reason: str) -> Drop:
        self.dropped[reason] += 1
        return Drop(reason)

    def _allow(self, ip: str, now: float) -> bool:
        bucket = self._buckets.get(ip)
        if bucket is None:
            bucket = TokenBucket(self.config.rate, self.config.burst, now)
            self._buckets[ip] = bucket
            while len(self._buckets) > self.config.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(ip)
        return bucket.take(1, now)

    @property
    def sources(self) -> int:
        """Source IPs with a rate-limit bucket now (bounded by ``max_sources``)."""
        return len(self._buckets)


# ---------------------------------------------------------------- RFC 3489

CLASSIC_ID_SIZE = 16
_CLASSIC_MAPPED, _CLASSIC_SOURCE, _CLASSIC_CHANGED = 0x0001, 0x0004, 0x0005


def classic_request(data: bytes) -> tuple[bytes, ChangeRequest] | None:
    """(transaction id, CHANGE-REQUEST) of an RFC 3489 Binding request, or None.

    Only the header and the attribute layout are checked; CHANGE-REQUEST is
    the one attribute read, the others are skipped.
    """
    if not HEADER_SIZE <= len(data) <= MAX_MESSAGE_SIZE or data[0:2] != b"\x00\x01":
        return None
    length = int.from_bytes(data[2:4], "big")
    if length % 4 or HEADER_SIZE + length != len(data):
        return None
    change, pos = ChangeRequest.NONE, HEADER_SIZE
    while pos < len(data):
        kind, size = struct.unpack_from("!HH", data, pos)
        end = pos + 4 + (size + 3) // 4 * 4
        if end > len(data):
            return None
        if kind == AttributeType.CHANGE_REQUEST and size == 4:
            flags = int.from_bytes(data[pos + 4 : pos + 8], "big")
            change = ChangeRequest(flags & (ChangeRequest.IP | ChangeRequest.PORT))
        pos = end
    return data[4:HEADER_SIZE], change


def classic_response(txid: bytes, mapped: Addr, origin: Addr | None, other: Addr | None) -> bytes:
    """An RFC 3489 Binding response: MAPPED-, SOURCE- and CHANGED-ADDRESS."""
    body = _classic_address(_CLASSIC_MAPPED, mapped)
    for kind, value in ((_CLASSIC_SOURCE, origin), (_CLASSIC_CHANGED, other)):
        if value is not None and _family(value) == _family(mapped):
            body += _classic_address(kind, value)
    return struct.pack("!HH", 0x0101, len(body)) + txid + body


def _classic_address(kind: int, address: Addr) -> bytes:
    ip = ipaddress.ip_address(address[0])
    value = struct.pack("!BBH", 0, 1 if ip.version == 4 else 2, address[1]) + ip.packed
    return struct.pack("!HH", kind, len(value)) + value


# ---------------------------------------------------------------- shell


class _AlternatePort(asyncio.DatagramProtocol):
    def __init__(self, service: StunService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.service.received(data, (addr[0], addr[1]), Port.ALTERNATE)

    def error_received(self, exc: Exception) -> None:
        self.service.responder.dropped[f"socket:{type(exc).__name__}"] += 1


PartnerSource = Callable[[], list[Addr]]
RawHandler = Callable[[bytes, Addr], bool]
DatagramHandler = Callable[[PeerConnection, bytes], None]


class StunService:
    """The Binding service on a supernode's endpoint (and its alternate port)."""

    def __init__(
        self,
        endpoint: Endpoint,
        responder: StunResponder,
        partners: PartnerSource | None = None,
    ) -> None:
        """Take over ``endpoint``'s raw and datagram handlers (chaining to the old ones)."""
        self.endpoint, self.responder = endpoint, responder
        self.partners = partners
        self._alternate: asyncio.DatagramTransport | None = None
        self._refreshed = float("-inf")
        self._connecting: set[Addr] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._previous_raw: RawHandler | None = endpoint.raw_handler
        self._previous_datagram: DatagramHandler | None = endpoint.datagram_handler
        endpoint.raw_handler = self.on_raw
        endpoint.datagram_handler = self.on_datagram

    @classmethod
    async def start(
        cls,
        endpoint: Endpoint,
        advertised: Address,
        alt_port: int | None,
        partners: PartnerSource | None = None,
        config: StunConfig | None = None,
    ) -> StunService:
        """Serve on ``endpoint``; open the alternate port (None: main + 1, 0: none).

        With the default, a taken port falls back to any free one (logged).
        """
        bound = endpoint.local_address
        assert bound is not None, "the endpoint must be listening"
        transport = await _open_alternate(bound, alt_port)
        alternate = None
        if transport is not None:
            alternate = (str(advertised.host), transport.get_extra_info("sockname")[1])
        responder = StunResponder(advertised.as_tuple(), alternate, config)
        service = cls(endpoint, responder, partners)
        if transport is not None:
            service._alternate = transport
            transport.set_protocol(_AlternatePort(service))
        return service

    @property
    def alternate_address(self) -> Addr | None:
        """The alternate port's socket address, if it is open."""
        if self._alternate is None:
            return None
        sockname = self._alternate.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    # ------------------------------------------------------------ input

    def on_raw(self, data: bytes, source: Addr) -> bool:
        """The endpoint's raw handler: True if the datagram was STUN (answered or counted)."""
        if self.received(data, source, Port.PRIMARY):
            return True
        return self._previous_raw is not None and self._previous_raw(data, source)

    def received(self, data: bytes, source: Addr, port: Port) -> bool:
        """Decide and act on one datagram; False if it is not STUN."""
        now = time.time()
        self._refresh_partners(now)
        decision = self.responder.request(data, source, port, now)
        if isinstance(decision, NotStun):
            if port is Port.ALTERNATE:
                self.responder.dropped["not-stun"] += 1
            return port is Port.ALTERNATE
        self._act(decision)
        return True

    def on_datagram(self, pc: PeerConnection, data: bytes) -> None:
        """Unreliable-channel datagrams: ``nat.reflect`` from a supernode, or the previous
        handler's."""
        try:
            command = read_header(data).command
        except WireError:
            command = -1
        if command != NAT_REFLECT:
            if self._previous_datagram is not None:
                self._previous_datagram(pc, data)
            return
        self._reflect_notice(pc, data)

    def _reflect_notice(self, pc: PeerConnection, data: bytes) -> None:
        if not _is_supernode(pc):
            self.responder.dropped["reflect-not-a-supernode"] += 1
            return
        try:
            message = wire_decode(data)
        except WireError as exc:
            self.responder.dropped[f"reflect-wire:{exc.reason}"] += 1
            return
        if not isinstance(message, NatReflect):
            self.responder.dropped["bad-reflect"] += 1
            return
        target = message.target.as_tuple()
        self._act(self.responder.reflect(target, message.transaction_id, time.time()))

    # ------------------------------------------------------------ output

    def _act(self, decision: Decision) -> None:
        if isinstance(decision, Reply):
            self._send(decision)
        elif isinstance(decision, Reflect):
            self._ask_partner(decision)

    def _send(self, reply: Reply) -> None:
        if reply.via is Port.PRIMARY:
            self.endpoint.send_raw(reply.datagram, reply.to)
        elif self._alternate is not None and not self._alternate.is_closing():
            self._alternate.sendto(reply.datagram, reply.to)
        else:
            self.responder.dropped["alternate-closed"] += 1

    def _ask_partner(self, reflect: Reflect) -> None:
        notice = wire_encode(
            NatReflect(
                target=Address.of(*reflect.target),
                transaction_id=reflect.transaction_id,
                origin=Address.of(*self.responder.primary) if self.responder.primary else None,
            )
        )
        pc = self.endpoint.connections.get(("udp", reflect.partner))
        if pc is not None and pc.core.established:
            self._notify(pc, notice)
            return
        if reflect.partner in self._connecting:
            self.responder.dropped["partner-connecting"] += 1
            return
        self._connecting.add(reflect.partner)
        task = asyncio.get_running_loop().create_task(self._connect(reflect.partner, notice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, partner: Addr, notice: bytes) -> None:
        try:
            pc = await self.endpoint.connect(
                partner, Expectation(role=Role.SUPERNODE), timeout=CONNECT_TIMEOUT_S
            )
        except ConnectError as exc:
            self.responder.dropped[f"partner:{exc.reason}"] += 1
            return
        finally:
            self._connecting.discard(partner)
        self._notify(pc, notice)

    def _notify(self, pc: PeerConnection, notice: bytes) -> None:
        try:
            pc.send_media(notice)
        except ConnectionLost:
            self.responder.dropped["partner-lost"] += 1

    def _refresh_partners(self, now: float) -> None:
        if self.partners is None or now - self._refreshed < PARTNER_REFRESH_S:
            return
        self._refreshed = now
        self.responder.partners = self.partners()

    # ------------------------------------------------------------ life and metrics

    def close(self) -> None:
        """Close the alternate port and cancel partner connection attempts."""
        if self._alternate is not None:
            self._alternate.close()
        for task in self._tasks:
            task.cancel()

    def drop_counts(self) -> Counter[str]:
        """Every STUN drop, keyed ``stun:REASON`` (for the supernode's metrics)."""
        return Counter({f"stun:{k}": v for k, v in self.responder.dropped.items()})

    @property
    def answered(self) -> int:
        """Binding success responses sent (direct, change-port and reflected)."""
        counts = self.responder.answered
        return counts["binding"] + counts["change-port"] + counts["reflected"]


async def _open_alternate(bound: Addr, alt_port: int | None) -> asyncio.DatagramTransport | None:
    if alt_port == 0:
        return None
    port = bound[1] + 1 if alt_port is None else alt_port
    loop = asyncio.get_running_loop()
    try:
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(bound[0], port)
        )
    except OSError as exc:
        if alt_port is not None or port > 0xFFFF:
            raise
        log.warning("STUN alternate port %d is taken (%s): using any free port", port, exc)
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=(bound[0], 0)
        )
    return transport


def _is_supernode(pc: PeerConnection) -> bool:
    peer = pc.peer
    return (
        peer is not None
        and peer.certificate is not None
        and peer.certificate.role == Role.SUPERNODE
    )


def partners_after(node_id: str, members: Sequence[tuple[str, Addr, bool]]) -> list[Addr]:
    """Partner order for ``node_id``: the members after it in node-id order (wrapping),
    alive ones first. ``members`` are (node id, STUN address, alive)."""
    ordered = sorted(members)
    after = [m for m in ordered if m[0] > node_id] + [m for m in ordered if m[0] < node_id]
    return [m[1] for m in after if m[2]] + [m[1] for m in after if not m[2]]
