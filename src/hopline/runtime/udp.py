"""Links over one UDP socket: a thin asyncio shell around the sans-I/O ``Link``.

One :class:`UdpEndpoint` owns one socket (IPv4 or IPv6, chosen by the bind
address) and one :class:`~hopline.runtime.handle.LinkHandle` -- one
:class:`~hopline.transport.link.Link` -- per remote address. Datagrams from a
known address go to its link; the first well-formed-looking datagram from a
new address creates a link and offers it through :meth:`UdpEndpoint.accept`
(and the optional ``on_peer`` callback). Datagrams that cannot start a link
are dropped and counted in :attr:`UdpEndpoint.dropped`. There is no
handshake here: authentication belongs to the crypto session on top.

Minimal use (e.g. a goodput benchmark through a 10 % lossy path)::

    import asyncio
    from hopline.runtime.udp import UdpEndpoint
    from hopline.testing.forwarder import ImpairingForwarder
    from hopline.testing.lossy import ImpairmentConfig

    async def main() -> None:
        server = await UdpEndpoint.bind("127.0.0.1", 0)
        lossy = await ImpairingForwarder.start(
            server.local_address, ImpairmentConfig(drop=0.10), seed=1
        )
        client = await UdpEndpoint.bind("127.0.0.1", 0)
        link = await client.connect(lossy.address)  # or server.local_address for 0 % loss
        for i in range(10_000):
            await link.send(i.to_bytes(4, "big") * 64)  # waits when the queue is full
        peer = await server.accept()
        for _ in range(10_000):
            message = await peer.receive()  # MessageReceived(data, reliable)
        await link.flush()  # everything acknowledged
        print(link.stats.srtt, link.stats.retransmission_ratio, lossy.stats)
        client.close(); lossy.close(); server.close()

    asyncio.run(main())  # or hopline.runtime.loop.run(main()) for uvloop
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

from hopline.runtime.handle import DEFAULT_HIGH_WATER, LinkHandle
from hopline.runtime.sockets import enlarge_buffers
from hopline.transport.config import LinkConfig
from hopline.transport.link import Link
from hopline.transport.packet import MAGIC

__all__ = ["UdpEndpoint"]

Address = tuple[str, int]

LINGER = 2.0
"""Seconds during which stray datagrams from a just-closed peer are dropped, not admitted."""


def _key(addr: tuple[object, ...]) -> Address:
    """Normalise a socket address (IPv6 ones have 4 fields) to ``(host, port)``."""
    host, port = addr[0], addr[1]
    if not isinstance(host, str) or not isinstance(port, int):
        raise TypeError(f"not an IP socket address: {addr!r}")
    return ipaddress.ip_address(host.split("%", 1)[0]).compressed, port


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: UdpEndpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._endpoint._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._endpoint.dropped[f"socket_error:{type(exc).__name__}"] += 1


class UdpEndpoint:
    """A UDP socket running one :class:`Link` per remote address."""

    def __init__(
        self,
        config: LinkConfig | None = None,
        *,
        accept: bool = True,
        max_peers: int = 1024,
        high_water: int = DEFAULT_HIGH_WATER,
        on_peer: Callable[[LinkHandle], None] | None = None,
    ) -> None:
        """Prefer :meth:`bind`, which also opens the socket."""
        self.config = config or LinkConfig()
        self.accepting = accept
        self.max_peers = max_peers
        self.high_water = high_water
        self.on_peer = on_peer
        self.dropped: Counter[str] = Counter()
        self._links: dict[Address, LinkHandle] = {}
        self._lingering: dict[Address, float] = {}
        self._incoming: asyncio.Queue[LinkHandle] = asyncio.Queue()
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def bind(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: LinkConfig | None = None,
        accept: bool = True,
        max_peers: int = 1024,
        high_water: int = DEFAULT_HIGH_WATER,
        on_peer: Callable[[LinkHandle], None] | None = None,
    ) -> UdpEndpoint:
        """Open a UDP socket on ``host:port`` (port 0 = any) and start serving."""
        endpoint = cls(
            config, accept=accept, max_peers=max_peers, high_water=high_water, on_peer=on_peer
        )
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(endpoint), local_addr=(host, port), family=family
        )
        enlarge_buffers(transport)
        endpoint._transport = transport
        return endpoint

    @property
    def local_address(self) -> Address:
        """``(host, port)`` the socket is bound to."""
        if self._transport is None:
            raise RuntimeError("endpoint is not bound")
        return _key(self._transport.get_extra_info("sockname"))

    @property
    def links(self) -> dict[Address, LinkHandle]:
        """Open links by remote address (a copy)."""
        return dict(self._links)

    async def connect(self, addr: tuple[str, int]) -> LinkHandle:
        """Return the link to ``addr`` (a numeric IP and port), creating it if needed."""
        key = _key(addr)
        self._lingering.pop(key, None)
        return self._links.get(key) or self._open(key)

    async def send(
        self, addr: tuple[str, int], data: bytes, *, reliable: bool = True
    ) -> LinkHandle:
        """Send one message to ``addr`` (connecting first if needed); return its link."""
        handle = await self.connect(addr)
        await handle.send(data, reliable=reliable)
        return handle

    async def accept(self) -> LinkHandle:
        """Wait for the next link that a new remote address started."""
        return await self._incoming.get()

    def close(self) -> None:
        """Close every link (sending CLOSE frames) and the socket."""
        for handle in list(self._links.values()):
            handle.close()
        if self._transport is not None:
            self._transport.close()

    async def __aenter__(self) -> UdpEndpoint:
        """Use the endpoint as an async context manager."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close on exit."""
        self.close()

    def _open(self, key: Address) -> LinkHandle:
        if self._transport is None:
            raise RuntimeError("endpoint is not bound")
        transport = self._transport

        def transmit(datagram: bytes) -> None:
            transport.sendto(datagram, key)

        handle = LinkHandle(
            Link(self.config),
            key,
            transmit,
            on_closed=self._forget,
            high_water=self.high_water,
        )
        self._links[key] = handle
        return handle

    def _forget(self, handle: LinkHandle) -> None:
        key = _key(handle.remote_address)
        if self._links.get(key) is handle:
            del self._links[key]
            now = asyncio.get_running_loop().time()
            self._lingering = {k: t for k, t in self._lingering.items() if t > now}
            if len(self._lingering) < self.max_peers:
                self._lingering[key] = now + LINGER

    def _on_datagram(self, data: bytes, addr: tuple[object, ...]) -> None:
        key = _key(addr)
        handle = self._links.get(key)
        if handle is None:
            handle = self._admit(key, data)
            if handle is None:
                return
        handle.datagram_received(data)

    def _admit(self, key: Address, data: bytes) -> LinkHandle | None:
        if not data or data[0] != MAGIC:
            self.dropped["not_hopline"] += 1
        elif self._lingering.get(key, 0.0) > asyncio.get_running_loop().time():
            self.dropped["closed_peer"] += 1
        elif not self.accepting:
            self.dropped["unknown_peer"] += 1
        elif len(self._links) >= self.max_peers:
            self.dropped["too_many_peers"] += 1
        else:
            handle = self._open(key)
            self._incoming.put_nowait(handle)
            if self.on_peer is not None:
                self.on_peer(handle)
            return handle
        return None
