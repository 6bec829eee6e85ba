"""An impairing UDP forwarder for real-socket tests (there is no ``tc netem`` here).

:class:`ImpairingForwarder` listens on one loopback UDP port and relays
datagrams between one client and a fixed target, passing each through a
seeded :class:`~hopline.testing.lossy.Impairment` -- the same model
:class:`~hopline.testing.lossy.FakeNet` uses -- in each direction: it may
drop, delay, reorder or duplicate them, and counts what it did in
:attr:`ImpairingForwarder.stats`.

The client is whoever last sent to the forwarder from an address other than
the target; the target sees all traffic coming from the forwarder's port.
Delayed copies are sent with ``loop.call_at``; a datagram with no delay is
sent at once, so a zero-delay path never reorders.

It only relays between loopback addresses: the target must be a loopback
address (127.0.0.0/8 or ::1), otherwise :meth:`ImpairingForwarder.start`
raises ValueError.

Usage::

    fwd = await ImpairingForwarder.start(server_addr, ImpairmentConfig(drop=0.2), seed=7)
    link = await client_endpoint.connect(fwd.address)
    ...
    print(fwd.stats.upstream.dropped, fwd.stats.downstream.duplicated)
    fwd.close()
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from dataclasses import dataclass, field
from typing import Any

from hopline.runtime.sockets import enlarge_buffers
from hopline.testing.lossy import Impairment, ImpairmentConfig, ImpairmentStats

__all__ = ["ForwarderStats", "ImpairingForwarder"]

Address = tuple[str, int]


@dataclass(slots=True)
class ForwarderStats:
    """What the forwarder did in each direction."""

    upstream: ImpairmentStats = field(default_factory=ImpairmentStats)
    """Client -> target."""
    downstream: ImpairmentStats = field(default_factory=ImpairmentStats)
    """Target -> client."""
    unroutable: int = 0
    """Datagrams from the target before any client spoke (nowhere to send them)."""


def _loopback(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(host)
    if not address.is_loopback:
        raise ValueError(f"the forwarder only relays to loopback addresses, not {host}")
    return address


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, forwarder: ImpairingForwarder) -> None:
        self._forwarder = forwarder

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._forwarder._relay(data, (addr[0], addr[1]))


class ImpairingForwarder:
    """A seeded lossy/reordering/duplicating UDP relay between one client and one target."""

    def __init__(
        self,
        target: Address,
        config: ImpairmentConfig | None = None,
        *,
        seed: int = 0,
        reverse: ImpairmentConfig | None = None,
    ) -> None:
        """Prefer :meth:`start`. ``reverse`` (default: ``config``) impairs target -> client."""
        host = _loopback(target[0]).compressed
        self.target: Address = (host, target[1])
        self.stats = ForwarderStats()
        up_config = config or ImpairmentConfig()
        self._up = Impairment(up_config, random.Random(f"{seed}:up"))
        self._down = Impairment(reverse or up_config, random.Random(f"{seed}:down"))
        self._up.stats = self.stats.upstream
        self._down.stats = self.stats.downstream
        self._client: Address | None = None
        self._transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def start(
        cls,
        target: Address,
        config: ImpairmentConfig | None = None,
        *,
        seed: int = 0,
        reverse: ImpairmentConfig | None = None,
        listen_host: str | None = None,
    ) -> ImpairingForwarder:
        """Listen on a free loopback port (same family as ``target``) and start relaying."""
        forwarder = cls(target, config, seed=seed, reverse=reverse)
        ipv6 = ":" in forwarder.target[0]
        host = listen_host or ("::1" if ipv6 else "127.0.0.1")
        _loopback(host)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(forwarder),
            local_addr=(host, 0),
            family=socket.AF_INET6 if ipv6 else socket.AF_INET,
        )
        enlarge_buffers(transport)  # else the kernel drops bursts before the impairment model
        forwarder._transport = transport
        return forwarder

    @property
    def address(self) -> Address:
        """Where clients should send (the forwarder's own loopback address)."""
        if self._transport is None:
            raise RuntimeError("forwarder is not started")
        name = self._transport.get_extra_info("sockname")
        return name[0], name[1]

    def close(self) -> None:
        """Stop relaying; datagrams still delayed are discarded when their time comes."""
        if self._transport is not None:
            self._transport.close()

    def _relay(self, data: bytes, source: Address) -> None:
        if (ipaddress.ip_address(source[0]).compressed, source[1]) == self.target:
            if self._client is None:
                self.stats.unroutable += 1
                return
            self._schedule(self._down, data, self._client)
        else:
            self._client = source
            self._schedule(self._up, data, self.target)

    def _schedule(self, impairment: Impairment, data: bytes, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for arrival in impairment.schedule(now):
            if arrival <= now:
                self._send(data, dest)
            else:
                loop.call_at(arrival, self._send, data, dest)

    def _send(self, data: bytes, dest: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(data, dest)
