"""The supernode's relay: the asyncio shell around :class:`~hopline.relay.RelayTable`.

A certified user asks for an allocation (``relay.allocate``); the service
asks the table, opens a UDP socket on the supernode's host (the *relayed
port*) and answers with its address. From then on:

* a datagram arriving on the relayed port is shown to the table; if the
  sender's IP holds a permission and the quotas allow, it goes to the owner
  over the owner's secure connection: on the channel the owner bound to
  that peer (:meth:`Connection.send_channel
  <hopline.connection.Connection.send_channel>`: a large datagram as a
  *channel datagram*, authenticated but not encrypted again, as it is
  sealed end to end already; a small one as a channel-data frame on the
  unreliable channel), else as a ``relay.data`` notice on the unreliable
  channel. Anything else is dropped and counted; the relayed port never
  answers a sender (no amplification);
* the owner sends the same ways: channel datagrams reach
  :meth:`RelayService.on_channel_data` (the endpoint's channel handler),
  frames and ``relay.send`` notices :meth:`RelayService.on_datagram`; the
  table checks the permission and quotas and the datagram leaves from the
  relayed port.

The owner's connection may be UDP or TCP (a client whose UDP is blocked
reaches the relay over TCP). When that connection closes, its allocations
are freed (``owner-left``); expiry frees them too (``expired``, the table's
single timer), and the owner gets a ``relay.released`` notice. The service
takes the endpoint's datagram handler and passes on every datagram that is
not for the relay to the handler it replaced (the overlay's).

The peer-to-owner path is the hot one (a voice call is 50 datagrams/s each
way per stream), so it does as little per datagram as it can: a sender's
address is parsed once (a bounded cache), and a frame for the owner is only
queued on the owner's connection core; the connection is serviced once per
event-loop turn for everything that turn queued. That pays the connection's
per-send work (handing datagrams to the socket, re-arming its timer) once per
burst instead of once per datagram, and lets the link bundle the burst's
small frames into fewer sealed datagrams; a large one is a channel
datagram, one AEAD call over two encrypted bytes and the payload's MAC,
outside the link. A frame waits for the end of the current loop turn at
most, never for a timer.

Relayed ports bind to the host the supernode listens on and are advertised
with the host of ``--public-address`` when given. Peers on loopback are
permitted only when that host is loopback itself (a test network).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from hopline.connection import ConnectionClosedError
from hopline.identity import Role
from hopline.relay import (
    Deliver,
    Owner,
    Refusal,
    RelayConfig,
    RelayTable,
    Released,
    Transmit,
    is_channel_frame,
    parse_channel_frame,
)
from hopline.relay.framing import FrameError
from hopline.runtime.endpoint import ConnectionLost, Endpoint, PeerConnection, ServiceError
from hopline.runtime.timer import CoreTimer
from hopline.transport import TransportError
from hopline.wire import Address, ErrorCode, Message, WireError, decode, encode, read_header
from hopline.wire.relay import (
    RELAY_COMMANDS,
    RelayAllocate,
    RelayAllocateReply,
    RelayChannel,
    RelayChannelReply,
    RelayData,
    RelayPermit,
    RelayPermitReply,
    RelayRefresh,
    RelayRefreshReply,
    RelayReleased,
    RelaySend,
)

log = logging.getLogger("hopline.relay")
SOURCE_CACHE = 4096  # parsed sender addresses kept, across all relayed ports
DatagramHandler = Callable[[PeerConnection, bytes], None]
T = TypeVar("T")

REFUSAL_CODES = {
    "quota-user": ErrorCode.TOO_MANY_REQUESTS,
    "quota-permissions": ErrorCode.TOO_MANY_REQUESTS,
    "quota-channels": ErrorCode.TOO_MANY_REQUESTS,
    "capacity": ErrorCode.UNAVAILABLE,
    "no-allocation": ErrorCode.NOT_FOUND,
    "peer-denied": ErrorCode.FORBIDDEN,
    "bad-channel": ErrorCode.BAD_REQUEST,
    "channel-in-use": ErrorCode.CONFLICT,
    "peer-has-channel": ErrorCode.CONFLICT,
}


class _RelayedPort(asyncio.DatagramProtocol):
    """The UDP socket of one allocation: every datagram goes to the service."""

    def __init__(self, service: RelayService, relay_id: int) -> None:
        self.service, self.relay_id = service, relay_id

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.service.peer_datagram(self.relay_id, data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.service.dropped[f"socket:{type(exc).__name__}"] += 1


class RelayService:
    """Relay allocations for certified users of one supernode."""

    def __init__(
        self,
        endpoint: Endpoint,
        host: str,
        advertised_host: str | None = None,
        config: RelayConfig | None = None,
    ) -> None:
        """Serve relays on ``host``; take over ``endpoint``'s datagram handler."""
        self.endpoint, self.host = endpoint, host
        self.advertised = ipaddress.ip_address(advertised_host or host)
        loopback = ipaddress.ip_address(host).is_loopback
        self.table = RelayTable(config or RelayConfig(allow_loopback_peers=loopback), time.time())
        self.ports: dict[int, asyncio.DatagramTransport] = {}
        self.owners: dict[int, PeerConnection] = {}
        self.dropped: Counter[str] = Counter()  # shell-level: undecodable, owner gone
        self._watched: set[PeerConnection] = set()
        self._sources: dict[tuple[str, int], Address] = {}
        self._unflushed: set[PeerConnection] = set()
        self._timer = CoreTimer(self._on_timer)
        self._previous: DatagramHandler | None = endpoint.datagram_handler
        endpoint.datagram_handler = self.on_datagram
        endpoint.channel_handler = self.on_channel_data

    # ------------------------------------------------------------ requests

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        """Answer a relay request; None for anything else."""
        if isinstance(message, RelayAllocate):
            return await self._allocate(pc, message)
        if isinstance(message, RelayRefresh):
            return self._refresh(pc, message)
        if isinstance(message, RelayPermit):
            return self._permit(pc, message)
        if isinstance(message, RelayChannel):
            return self._bind(pc, message)
        return None

    async def _allocate(self, pc: PeerConnection, request: RelayAllocate) -> Message:
        owner = _owner(pc)
        allocation = _granted(self.table.allocate(owner, request.lifetime, time.time()))
        try:
            relayed = await self._open_port(allocation.relay_id)
        except OSError as exc:
            self.table.release(allocation.relay_id, "no-port")
            raise ServiceError(
                ErrorCode.UNAVAILABLE, f"cannot open a relayed port: {exc}"
            ) from None
        self.table.attach(allocation.relay_id, relayed)
        self._own(allocation.relay_id, pc)
        self._arm()
        lifetime = round(allocation.expires - time.time())
        log.info(
            "relay %d for %s at %s (%d s)",
            allocation.relay_id,
            owner[0],
            relayed,
            lifetime,
            extra={"relay_id": allocation.relay_id, "user": owner[0]},
        )
        return RelayAllocateReply(
            relay_id=allocation.relay_id,
            relayed=relayed,
            lifetime=max(0, lifetime),
            observed=Address.of(*pc.address) if pc.address[0] else None,
        )

    async def _open_port(self, relay_id: int) -> Address:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _RelayedPort(self, relay_id), local_addr=(self.host, 0)
        )
        self.ports[relay_id] = transport
        port = transport.get_extra_info("sockname")[1]
        return Address(self.advertised, port)

    def _refresh(self, pc: PeerConnection, request: RelayRefresh) -> Message:
        outcome = self.table.refresh(_owner(pc), request.relay_id, request.lifetime, time.time())
        if isinstance(outcome, Released):
            self._close_port(outcome)
            return RelayRefreshReply(lifetime=0)
        allocation = _granted(outcome)
        self._own(allocation.relay_id, pc)
        self._arm()
        return RelayRefreshReply(lifetime=max(0, round(allocation.expires - time.time())))

    def _permit(self, pc: PeerConnection, request: RelayPermit) -> Message:
        hosts = [peer.host for peer in request.peers]
        outcome = self.table.permit(_owner(pc), request.relay_id, hosts, time.time())
        permitted = _granted(outcome)
        self._own(request.relay_id, pc)
        self._arm()
        return RelayPermitReply(lifetime=round(permitted.expires - time.time()))

    def _bind(self, pc: PeerConnection, request: RelayChannel) -> Message:
        now = time.time()
        outcome = self.table.bind_channel(
            _owner(pc), request.relay_id, request.channel, request.peer, now
        )
        bound = _granted(outcome)
        self._own(request.relay_id, pc)
        self._arm()
        return RelayChannelReply(lifetime=round(bound.expires - now))

    def _own(self, relay_id: int, pc: PeerConnection) -> None:
        """``pc`` is now the owner's connection for ``relay_id``; free it when pc closes."""
        self.owners[relay_id] = pc
        if pc not in self._watched:
            self._watched.add(pc)
            pc.closed.add_done_callback(lambda _: self._owner_left(pc))

    def _owner_left(self, pc: PeerConnection) -> None:
        self._watched.discard(pc)
        for relay_id, owner_pc in list(self.owners.items()):
            if owner_pc is pc:
                released = self.table.release(relay_id, "owner-left")
                if released is not None:
                    self._close_port(released)
        self._arm()

    # ------------------------------------------------------------ datagrams

    def on_datagram(self, pc: PeerConnection, data: bytes) -> None:
        """An unreliable-channel datagram: relay traffic, or the previous handler's."""
        if is_channel_frame(data):
            self._owner_channel(pc, data)
            return
        try:
            command = read_header(data).command
        except WireError:
            command = -1
        if command not in RELAY_COMMANDS:
            if self._previous is not None:
                self._previous(pc, data)
            else:
                self.dropped["not-relay"] += 1
            return
        self._owner_send(pc, data)

    def _owner_send(self, pc: PeerConnection, data: bytes) -> None:
        try:
            message = decode(data)
        except WireError as exc:
            self.dropped[f"wire:{exc.reason}"] += 1
            return
        owner = _owner_or_none(pc)
        if not isinstance(message, RelaySend) or owner is None:
            self.dropped["not-a-send" if owner is not None else "anonymous"] += 1
            return
        now = time.time()
        decision = self.table.to_peer(owner, message.relay_id, message.peer, len(message.data), now)
        if isinstance(decision, Transmit):
            self._transmit(decision, message.data)

    def _owner_channel(self, pc: PeerConnection, data: bytes) -> None:
        try:
            channel, payload = parse_channel_frame(data)
        except FrameError as exc:
            self.dropped[exc.reason] += 1
            return
        self.on_channel_data(pc, channel, payload)

    def on_channel_data(self, pc: PeerConnection, channel: int, payload: bytes) -> None:
        """An owner's datagram on ``channel`` (a channel datagram or frame): to its peer."""
        owner = _owner_or_none(pc)
        if owner is None:
            self.dropped["anonymous"] += 1
            return
        decision = self.table.channel_to_peer(owner, channel, len(payload), time.time())
        if isinstance(decision, Transmit):
            self._transmit(decision, payload)

    def _transmit(self, decision: Transmit, payload: bytes) -> None:
        port = self.ports.get(decision.relay_id)
        if port is None or port.is_closing():
            self.dropped["port-closed"] += 1
            return
        port.sendto(payload, decision.peer.as_tuple())

    def peer_datagram(self, relay_id: int, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from anyone on relayed port ``relay_id``: to its owner, or dropped."""
        try:
            source = self._source(addr)
        except ValueError:
            self.dropped["bad-source"] += 1
            return
        self._from_peer(relay_id, data, source)

    def _from_peer(self, relay_id: int, data: bytes, source: Address) -> None:
        now = time.time()
        decision = self.table.from_peer(relay_id, source, len(data), now)
        if not isinstance(decision, Deliver):
            return  # counted by the table; nothing goes back to the sender
        if decision.channel is None:
            data = encode(RelayData(relay_id=relay_id, peer=source, data=data))
        self._to_owner(relay_id, data, now, decision.channel)

    def _source(self, addr: tuple[str, int]) -> Address:
        """The :class:`Address` of a sender, parsed once per sender (bounded cache)."""
        source = self._sources.get(addr)
        if source is None:
            if len(self._sources) >= SOURCE_CACHE:
                self._sources.clear()  # a flood of senders costs a parse each, never memory
            source = self._sources[addr] = Address.of(*addr)  # ValueError: not an address
        return source

    def _to_owner(self, relay_id: int, data: bytes, now: float, channel: int | None = None) -> None:
        """Queue ``data`` for the owner, as a channel datagram on ``channel`` or as a
        ``relay.data`` notice on the unreliable channel; one flush per loop turn."""
        pc = self.owners.get(relay_id)
        if pc is None:
            self.dropped["owner-gone"] += 1
            return
        try:
            if channel is None:
                pc.core.send_media(data, now)
            else:
                pc.core.send_channel(channel, data, now)
        except ConnectionClosedError:
            self.dropped["owner-gone"] += 1
            return
        except TransportError as exc:  # the owner's send queue is full
            self.dropped[f"owner:{exc.reason}"] += 1
            return
        if pc not in self._unflushed:
            self._unflushed.add(pc)
            if len(self._unflushed) == 1:
                asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Send what this loop turn queued for owners: their cores may bundle the frames."""
        unflushed, self._unflushed = self._unflushed, set()
        for pc in unflushed:
            pc.service()

    # ------------------------------------------------------------ time

    def _arm(self) -> None:
        self._timer.arm(self.table.get_timer())

    def _on_timer(self) -> None:
        for released in self.table.handle_timer(time.time()):
            self._close_port(released)
        self._arm()

    def _close_port(self, released: Released) -> None:
        port = self.ports.pop(released.relay_id, None)
        if port is not None:
            port.close()
        pc = self.owners.pop(released.relay_id, None)
        log.info(
            "relay %d released (%s)",
            released.relay_id,
            released.reason,
            extra={"relay_id": released.relay_id, "reason": released.reason},
        )
        if pc is None or released.reason == "owner-left":
            return
        try:
            pc.notify(RelayReleased(relay_id=released.relay_id, reason=released.reason))
        except ConnectionLost:
            self.dropped["owner-gone"] += 1

    def close(self) -> None:
        """Close every relayed port and stop the timer."""
        self._timer.cancel()
        for port in self.ports.values():
            port.close()
        self.ports.clear()

    # ------------------------------------------------------------ metrics

    def drop_counts(self) -> Counter[str]:
        """Every relay drop and refusal, keyed ``relay:REASON`` / ``relay-refused:REASON``."""
        counts = Counter({f"relay:{k}": v for k, v in self.table.dropped.items()})
        counts.update({f"relay:{k}": v for k, v in self.dropped.items()})
        counts.update({f"relay-refused:{k}": v for k, v in self.table.refused.items()})
        return counts


def _owner_or_none(pc: PeerConnection) -> Owner | None:
    peer = pc.peer
    certificate = peer.certificate if peer is not None else None
    if certificate is None or certificate.body.role != Role.USER:
        return None
    return (certificate.subject, certificate.body.device_id)


def _owner(pc: PeerConnection) -> Owner:
    """The certified user and device behind ``pc``, or a 403 for anyone else."""
    owner = _owner_or_none(pc)
    if owner is None:
        raise ServiceError(ErrorCode.FORBIDDEN, "only logged-in users may use the relay")
    return owner


def _granted(outcome: T | Refusal) -> T:
    """``outcome`` itself, or the error reply a refusal stands for."""
    if isinstance(outcome, Refusal):
        code = REFUSAL_CODES.get(outcome.reason, ErrorCode.BAD_REQUEST)
        raise ServiceError(code, f"relay: {outcome.reason}")
    return outcome
