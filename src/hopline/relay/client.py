"""The client side of supernode relays: allocations used over the home connection.

A :class:`RelayClient` wraps the secure connection to the home supernode
(UDP or TCP) and multiplexes the relay traffic on it:

* :meth:`RelayClient.allocate` asks for an allocation (``relay.allocate``)
  and returns a :class:`RelayAllocationHandle`, which keeps itself alive:
  it refreshes the allocation at half its lifetime and re-installs its
  permissions and channel bindings before they lapse (300 s and 600 s on
  the supernode);
* :meth:`RelayAllocationHandle.send` sends one datagram to a peer through
  the relayed port: once a channel is bound to the peer, on that channel
  (:meth:`Connection.send_channel <hopline.connection.Connection.send_channel>`:
  a large datagram as a channel datagram, authenticated but not encrypted a
  second time; a small one as a channel-data frame that shares a sealed
  datagram with the turn's other frames), as a ``relay.send`` notice before
  that;
* the owner of the home connection passes every unreliable-channel
  datagram to :meth:`RelayClient.handle_datagram`, every channel datagram
  to :meth:`RelayClient.handle_channel` and every notice to
  :meth:`RelayClient.handle_message`; ``relay.data`` and channel frames go
  to the allocation's ``on_data(data, peer, address)`` (the peer as an
  :class:`~hopline.wire.Address` and as the socket pair ``address``),
  ``relay.released`` ends it.

Sending is batched: :meth:`RelayAllocationHandle.send` only queues the
frame on the home connection's core, and the connection is serviced once
per event-loop turn for everything that turn queued (as the supernode does
towards owners). A bulk transfer sends a window of datagrams in one turn;
servicing the connection once for all of them (sealing, re-arming its
timer) instead of once per datagram is most of the client's relay cost. A
frame waits for the end of the current loop turn at most.

A relayed datagram that names no live allocation or channel is dropped and
counted in :attr:`RelayClient.dropped`. Memory is bounded: permissions and
channels per allocation are capped (:data:`MAX_PEERS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable

from hopline.connection import ConnectionClosedError
from hopline.relay.allocation import CHANNEL_MAX, CHANNEL_MIN
from hopline.relay.framing import FrameError, is_channel_frame, parse_channel_frame
from hopline.runtime.peer import EndpointError, PeerConnection
from hopline.transport import TransportError
from hopline.wire import Address, Message, WireError, decode, encode
from hopline.wire.relay import (
    RelayAllocate,
    RelayAllocateReply,
    RelayChannel,
    RelayData,
    RelayPermit,
    RelayRefresh,
    RelayReleased,
    RelaySend,
)

__all__ = ["MAX_PEERS", "RelayAllocationHandle", "RelayClient", "RelayClientError"]

log = logging.getLogger("hopline.relay.client")
MAX_PEERS = 32  # permissions and channels per allocation (the supernode's limit)
PERMIT_EVERY_S = 120.0  # permissions last 300 s on the supernode
BIND_EVERY_S = 300.0  # channel bindings last 600 s
Addr = tuple[str, int]
DataCallback = Callable[[bytes, Address, Addr], None]


class RelayClientError(EndpointError):
    """A relay request failed or the allocation is gone."""


class RelayAllocationHandle:
    """One allocation on the home supernode, kept alive until :meth:`release`."""

    def __init__(self, client: RelayClient, reply: RelayAllocateReply) -> None:
        self.client = client
        self.relay_id = reply.relay_id
        self.relayed = reply.relayed
        self.observed = reply.observed
        self.lifetime = reply.lifetime
        self.on_data: DataCallback | None = None
        self.released: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.permitted: dict[str, Address] = {}  # by IP: ports are not checked
        self.channels: dict[Address, int] = {}
        self.bound: dict[int, tuple[Address, Addr]] = {}  # channel -> its peer, both forms
        self._channel_of: dict[Addr, int] = {}  # the peer's socket pair -> channel
        self.sent = self.received = 0
        self._task = asyncio.get_running_loop().create_task(self._keep_alive())

    @property
    def base(self) -> str:
        """The check-core base name: ``relay:<id>`` or ``tcp-relay:<id>``."""
        return f"{'tcp-relay' if self.client.tcp else 'relay'}:{self.relay_id}"

    @property
    def alive(self) -> bool:
        """True until released (by us, by the supernode, or with the connection)."""
        return not self.released.done()

    async def permit(self, peers: list[Address]) -> None:
        """Let datagrams from these peers' IP addresses through (new ones only)."""
        fresh = [p for p in peers if str(p.host) not in self.permitted]
        fresh = fresh[: max(0, MAX_PEERS - len(self.permitted))]
        if not fresh:
            return
        self.permitted.update((str(p.host), p) for p in fresh)
        await self.client.request(RelayPermit(relay_id=self.relay_id, peers=tuple(fresh)))

    async def bind(self, peer: Address) -> int:
        """Bind a channel to ``peer`` (later datagrams use two-byte frames)."""
        if peer in self.channels:
            return self.channels[peer]
        if len(self.channels) >= MAX_PEERS:
            raise RelayClientError("too many channels on one allocation")
        channel = self.client.new_channel(self)
        await self.client.request(RelayChannel(relay_id=self.relay_id, channel=channel, peer=peer))
        self.channels[peer] = channel
        self.bound[channel] = (peer, peer.as_tuple())
        self._channel_of[peer.as_tuple()] = channel
        self.permitted[str(peer.host)] = peer
        return channel

    def send(self, data: bytes, peer: Address) -> None:
        """Send one datagram to ``peer`` from the relayed port (best effort)."""
        if not self.alive:
            self.client.dropped["send:released"] += 1
            return
        channel = self.channels.get(peer)
        if channel is None:
            data = encode(RelaySend(relay_id=self.relay_id, peer=peer, data=data))
        if self.client.queue(data, channel):
            self.sent += 1

    def send_to(self, data: bytes, address: Addr) -> None:
        """:meth:`send` to the peer at socket pair ``address`` (a bound channel is
        found without building an :class:`~hopline.wire.Address`)."""
        channel = self._channel_of.get(address)
        if channel is None or not self.alive:
            self.send(data, Address.of(*address))
        elif self.client.queue(data, channel):
            self.sent += 1

    def deliver(self, data: bytes, peer: Address, address: Addr | None = None) -> None:
        """A datagram from ``peer`` (socket pair ``address``) arrived on the relayed port."""
        self.received += 1
        if self.on_data is None:
            self.client.dropped["data:no-handler"] += 1
            return
        self.on_data(data, peer, address if address is not None else peer.as_tuple())

    async def release(self) -> None:
        """Delete the allocation on the supernode (best effort) and stop refreshing."""
        if not self.alive:
            return
        self.end("deleted")
        with contextlib.suppress(EndpointError):  # gone with its connection anyway
            await self.client.request(RelayRefresh(relay_id=self.relay_id, lifetime=0))

    def end(self, reason: str) -> None:
        """The allocation is over (``reason``): stop refreshing, forget it."""
        if not self.released.done():
            self.released.set_result(reason)
        self._task.cancel()
        self.client.forget(self)

    async def _keep_alive(self) -> None:
        since_permit = since_bind = 0.0
        step = max(1.0, min(self.lifetime / 2, PERMIT_EVERY_S))
        try:
            while True:
                await asyncio.sleep(step)
                since_permit, since_bind = since_permit + step, since_bind + step
                await self.client.request(RelayRefresh(relay_id=self.relay_id))
                if since_permit >= PERMIT_EVERY_S and self.permitted:
                    peers = tuple(self.permitted.values())
                    await self.client.request(RelayPermit(relay_id=self.relay_id, peers=peers))
                    since_permit = 0.0
                if since_bind >= BIND_EVERY_S:
                    await self._rebind()
                    since_bind = 0.0
        except EndpointError as exc:
            log.info("relay %d lost: %s", self.relay_id, exc)
            self.end("lost")

    async def _rebind(self) -> None:
        for peer, channel in list(self.channels.items()):
            request = RelayChannel(relay_id=self.relay_id, channel=channel, peer=peer)
            await self.client.request(request)


class RelayClient:
    """Relay allocations over one connection to the home supernode."""

    def __init__(self, pc: PeerConnection, *, tcp: bool = False, timeout: float = 5.0) -> None:
        self.pc = pc
        self.tcp = tcp
        self.timeout = timeout
        self.allocations: dict[int, RelayAllocationHandle] = {}
        self.dropped: Counter[str] = Counter()
        self._channels: dict[int, RelayAllocationHandle] = {}
        self._next_channel = CHANNEL_MIN
        self._flush_pending = False

    def queue(self, data: bytes, channel: int | None = None) -> bool:
        """Queue ``data`` for the home: a channel datagram on ``channel``, or (no
        channel) a message on the unreliable channel. Sent at the end of this loop
        turn with the rest of the turn's; False (counted) if it cannot be."""
        try:
            if channel is None:
                self.pc.core.send_media(data, time.time())
            else:
                self.pc.core.send_channel(channel, data, time.time())
        except ConnectionClosedError:
            self.dropped["send:closed"] += 1
            return False
        except TransportError as exc:  # the home's send queue is full
            self.dropped[f"send:{exc.reason}"] += 1
            return False
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        self._flush_pending = False
        if not self.pc.closed.done():
            self.pc.service()

    async def request(self, message: Message) -> Message:
        """A relay request on the home connection (errors raise EndpointError)."""
        return await self.pc.request(message, timeout=self.timeout)

    async def allocate(self, lifetime: int | None = None) -> RelayAllocationHandle:
        """A new allocation, kept alive until released."""
        reply = await self.request(RelayAllocate(lifetime=lifetime))
        if not isinstance(reply, RelayAllocateReply):
            raise RelayClientError(f"unexpected reply {reply.NAME}")
        handle = RelayAllocationHandle(self, reply)
        self.allocations[handle.relay_id] = handle
        return handle

    def new_channel(self, handle: RelayAllocationHandle) -> int:
        """A channel number not in use on this connection."""
        for _ in range(CHANNEL_MAX - CHANNEL_MIN + 1):
            channel = self._next_channel
            self._next_channel = channel + 1 if channel < CHANNEL_MAX else CHANNEL_MIN
            if channel not in self._channels:
                self._channels[channel] = handle
                return channel
        raise RelayClientError("no free channel number")

    def forget(self, handle: RelayAllocationHandle) -> None:
        """Drop a released allocation and its channels."""
        self.allocations.pop(handle.relay_id, None)
        for channel in handle.channels.values():
            self._channels.pop(channel, None)

    def handle_datagram(self, data: bytes) -> bool:
        """An unreliable-channel datagram from the home: True if it was relay traffic."""
        if is_channel_frame(data):
            return self._on_frame(data)
        try:
            message = decode(data)
        except WireError:
            return False
        if not isinstance(message, RelayData):
            return False
        handle = self.allocations.get(message.relay_id)
        if handle is None:
            self.dropped["data:unknown-relay"] += 1
        else:
            handle.deliver(message.data, message.peer)
        return True

    def _on_frame(self, data: bytes) -> bool:
        try:
            channel, payload = parse_channel_frame(data)
        except FrameError as exc:
            self.dropped[exc.reason] += 1
            return True
        self.handle_channel(channel, payload)
        return True

    def handle_channel(self, channel: int, payload: bytes) -> None:
        """A datagram from the home on ``channel`` (a channel datagram or frame)."""
        handle = self._channels.get(channel)
        bound = handle.bound.get(channel) if handle is not None else None
        if handle is None or bound is None:
            self.dropped["channel:unknown"] += 1
            return
        handle.deliver(payload, *bound)

    def handle_message(self, message: Message) -> bool:
        """A notice from the home: True if it was ``relay.released``."""
        if not isinstance(message, RelayReleased):
            return False
        handle = self.allocations.get(message.relay_id)
        if handle is None:
            self.dropped["released:unknown-relay"] += 1
        else:
            handle.end(message.reason or "released")
        return True

    def close(self) -> None:
        """Forget every allocation (the supernode frees them with the connection)."""
        for handle in list(self.allocations.values()):
            handle.end("closed")
