"""``run_netcheck``: NAT discovery over real sockets (the asyncio shell of
:class:`~hopline.nat.discovery.NatDiscovery`).

It opens the UDP sockets the core asks for: two IPv4 sockets (the mapping
tests use the first, the filtering tests the second, so that the unsolicited
answers of the filtering tests cannot disturb the mappings the first one
measures), and an IPv6 one when an IPv6 server is given and the host can
bind one. It learns the local address each would use towards the first
server of its family (a connected throwaway socket: nothing is sent;
without an IPv6 server, towards a global IPv6 address, to see whether the
host has IPv6 at all — listed with port 0), then moves
datagrams between the sockets and the core until the core has its report.
In parallel it tries a TCP connection to the servers (supernodes listen for
TCP on their UDP port), first success wins: ``tcp`` in the report. The core
bounds the UDP part (about 1.5 s per phase); ``timeout`` bounds the whole
run, after which the partial answer is a report of UDP blocked.

When UDP works, the upload is measured next (``upload=True``): a packet train
(:class:`~hopline.nat.upload.UploadProbe`) from socket 0, whose mapping
discovery has just opened, to the first IPv4 server that answered. Its
result is the report's ``upload_bps`` (None when too few answers came back);
it adds about one round trip, at most :attr:`UploadConfig.timeout_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from hopline.nat.discovery import DiscoveryConfig, NatDiscovery, NatReport, format_addr
from hopline.nat.stun import Addr
from hopline.nat.upload import UploadConfig, UploadEstimate, UploadProbe
from hopline.wire import Address

__all__ = ["TCP_TIMEOUT_S", "run_netcheck"]

TCP_TIMEOUT_S = 2.0
#: Global addresses for a route lookup (connect() on a UDP socket sends nothing).
ANY_GLOBAL: dict[int, Addr] = {
    socket.AF_INET: ("192.0.2.1", 9),
    socket.AF_INET6: ("2001:4860:4860::8888", 9),
}


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, check: _Netcheck, index: int) -> None:
        self.check, self.index = check, index

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.check.received(data, (addr[0], addr[1]), self.index)

    def error_received(self, exc: Exception) -> None:
        self.check.errors += 1  # ICMP unreachable and the like: the core's timeout decides


class _Netcheck:
    """The sockets, the core and the wake-up event of one run."""

    def __init__(self) -> None:
        self.core: NatDiscovery | None = None
        self.upload: UploadProbe | None = None  # the train, once discovery is done
        self.sockets: dict[tuple[int, int], asyncio.DatagramTransport] = {}
        self.wake = asyncio.Event()
        self.errors = 0

    async def open(self, servers: Sequence[Addr]) -> list[Addr]:
        """Open the sockets the servers' families need; return socket 0's local addresses."""
        local: list[Addr] = []
        for family, count in ((socket.AF_INET, 2), (socket.AF_INET6, 1)):
            towards = [s for s in servers if (":" in s[0]) == (family == socket.AF_INET6)]
            if not towards:
                source = _source_ip(family, ANY_GLOBAL[family])
                if source is not None and family == socket.AF_INET6:
                    local.append((source, 0))  # a route to the IPv6 Internet, no socket
                continue
            try:
                port = await self._bind(family, count)
            except OSError:
                continue  # no IPv6 here: the report says so
            source = _source_ip(family, towards[0])
            if source is not None:
                local.append((source, port))
        return local

    async def _bind(self, family: int, count: int) -> int:
        """Bind ``count`` sockets of ``family``; return the first one's port."""
        loop = asyncio.get_running_loop()
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104
        for index in range(count):
            transport, _ = await loop.create_datagram_endpoint(
                lambda i=index: _Socket(self, i),  # type: ignore[misc]
                local_addr=(wildcard, 0),
                family=family,
            )
            self.sockets[(family, index)] = transport
        return int(self.sockets[(family, 0)].get_extra_info("sockname")[1])

    def received(self, data: bytes, source: Addr, index: int) -> None:
        now = time.monotonic()
        host = source[0].removeprefix("::ffff:") if "." in source[0] else source[0]
        if self.upload is not None and index == 0:
            self.upload.receive(data, (host, source[1]), now)
            self.wake.set()
        elif self.core is not None:
            self.core.receive(data, (host, source[1]), now, index)
            self.wake.set()

    async def measure_upload(self, server: Addr, config: UploadConfig) -> UploadEstimate:
        """Send one train to ``server`` from socket 0; wait for its answers."""
        probe = self.upload = UploadProbe(server, config)
        transport = self.sockets[(socket.AF_INET, 0)]
        for data, destination in probe.datagrams_to_send(time.monotonic()):
            transport.sendto(data, destination)
        while probe.result is None:
            timer = probe.get_timer()
            assert timer is not None
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, timer - time.monotonic()))
            probe.handle_timer(time.monotonic())
        return probe.result

    def flush(self) -> None:
        assert self.core is not None
        for data, destination, index in self.core.datagrams_to_send(time.monotonic()):
            family = socket.AF_INET6 if ":" in destination[0] else socket.AF_INET
            transport = self.sockets.get((family, index))
            if transport is not None and not transport.is_closing():
                transport.sendto(data, destination)

    async def run(self) -> NatReport:
        core = self.core
        assert core is not None
        while core.result is None:
            self.flush()
            timer = core.get_timer()
            if timer is None:
                break
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.0, timer - time.monotonic()))
            if time.monotonic() >= timer:
                core.handle_timer(time.monotonic())
        assert core.result is not None
        return core.result

    def close(self) -> None:
        for transport in self.sockets.values():
            transport.close()


def _source_ip(family: int, towards: Addr) -> str | None:
    """The local IP the kernel would send from towards ``towards`` (nothing is sent)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(towards)
        except OSError:
            return None
        host = str(probe.getsockname()[0]).split("%", 1)[0]
    return host if host not in ("", "::", "0.0.0.0") else None  # noqa: S104 -- no route


async def tcp_reachable(servers: Sequence[Addr], timeout: float = TCP_TIMEOUT_S) -> bool:
    """Whether a TCP connection to any of ``servers`` opens within ``timeout``."""

    async def attempt(server: Addr) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(*server), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    if not servers:
        return False
    results = await asyncio.gather(*(attempt(s) for s in servers))
    return any(results)


async def run_netcheck(
    servers: Sequence[Address],
    *,
    timeout: float = 10.0,
    tcp: bool = True,
    config: DiscoveryConfig | None = None,
    upload: UploadConfig | None = UploadConfig(),  # noqa: B008 -- frozen
) -> NatReport:
    """Discover this host's NAT against ``servers`` (supernodes' STUN addresses).

    The first IPv4 server is server A, the next one on another IP server B
    (see :mod:`hopline.nat.discovery`); the first IPv6 server gets a Binding
    request of its own. ``tcp``: also try TCP to the servers. ``upload``:
    then measure the upload with this train (None: do not).
    """
    addrs = [_plain(a) for a in servers]
    check = _Netcheck()
    try:
        local = await check.open(addrs)
        check.core = NatDiscovery(addrs, now=time.monotonic(), local_addresses=local, config=config)
        tcp_task = asyncio.ensure_future(tcp_reachable(addrs[:4])) if tcp else None
        try:
            report = await asyncio.wait_for(check.run(), timeout)
        except TimeoutError:
            report = _blocked(local)
        target = _upload_target(addrs, report) if upload is not None else None
        if upload is not None and target is not None:
            estimate = await check.measure_upload(target, upload)
            report = replace(report, upload_bps=estimate.bps)
        tcp_ok = await tcp_task if tcp_task is not None else None
    finally:
        check.close()
    return replace(report, tcp=tcp_ok)


def _plain(address: Address) -> Addr:
    host, port = address.as_tuple()
    return (str(host), int(port))


def _upload_target(servers: Sequence[Addr], report: NatReport) -> Addr | None:
    """The first IPv4 server that answered discovery (None: UDP did not work)."""
    if not report.udp:
        return None
    for server in servers:
        if ":" not in server[0] and format_addr(server) in report.rtts:
            return server
    return None


def _blocked(local: list[Addr]) -> NatReport:
    """The report of a run that heard nothing (UDP blocked)."""
    result = NatDiscovery([], now=0.0, local_addresses=local).result
    assert result is not None
    return result
