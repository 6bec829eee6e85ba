"""Links over TCP: the same ``Link``, its datagrams framed on a byte stream.

For peers that cannot use UDP (strict firewalls, relays), a link runs over a
TCP connection unchanged: every datagram the link produces is written as a
2-byte big-endian length followed by that many bytes, and every frame read
back is fed to :meth:`~hopline.transport.link.Link.receive_datagram`. The
link's own retransmission simply never fires on a healthy connection.

Framing is checked *before* buffering: a zero length (``empty_frame``) or a
length above ``max_frame_size`` (``frame_too_large``, default the link MTU)
closes that connection at once, and the reason is counted in
:attr:`TcpListener.closed_by_reason` and left in the handle's
``close_reason``. A read buffer never holds more than one frame.

Usage::

    listener = await TcpListener.listen("::1", 0)
    client = await tcp_connect("::1", listener.local_address[1])
    server_side = await listener.accept()
    client.send_nowait(b"hi")
    print((await server_side.receive()).data)
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

from hopline.runtime.handle import DEFAULT_HIGH_WATER, LinkHandle
from hopline.transport.config import LinkConfig
from hopline.transport.errors import RemoteTransportError
from hopline.transport.link import Link

__all__ = ["FramingError", "LengthPrefixDecoder", "TcpListener", "frame", "tcp_connect"]

PREFIX_SIZE = 2
MAX_FRAME = 0xFFFF


class FramingError(RemoteTransportError):
    """The byte stream does not follow the 2-byte length-prefix framing."""

    default_reason = "bad_framing"


def frame(datagram: bytes) -> bytes:
    """Prefix ``datagram`` with its 2-byte big-endian length."""
    if not 0 < len(datagram) <= MAX_FRAME:
        raise ValueError(f"cannot frame a {len(datagram)}-byte datagram")
    return len(datagram).to_bytes(PREFIX_SIZE, "big") + datagram


class LengthPrefixDecoder:
    """Sans-I/O splitter of a length-prefixed stream into datagrams."""

    def __init__(self, max_frame_size: int = MAX_FRAME) -> None:
        """Refuse frames longer than ``max_frame_size`` (at most 65535)."""
        self.max_frame_size = min(max_frame_size, MAX_FRAME)
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add stream bytes; return the complete frames. Raises FramingError on bad framing."""
        self._buffer += data
        frames: list[bytes] = []
        pos = 0
        while len(self._buffer) - pos >= PREFIX_SIZE:
            length = int.from_bytes(self._buffer[pos : pos + PREFIX_SIZE], "big")
            if length == 0:
                raise FramingError("zero-length frame", reason="empty_frame")
            if length > self.max_frame_size:
                raise FramingError(f"{length}-byte frame", reason="frame_too_large")
            end = pos + PREFIX_SIZE + length
            if end > len(self._buffer):
                break
            frames.append(bytes(self._buffer[pos + PREFIX_SIZE : end]))
            pos = end
        del self._buffer[:pos]
        return frames


class _LinkStreamProtocol(asyncio.Protocol):
    """One TCP connection carrying one link."""

    def __init__(
        self,
        config: LinkConfig,
        max_frame_size: int,
        high_water: int,
        on_handle: Callable[[LinkHandle], None],
        closed_by_reason: Counter[str],
    ) -> None:
        self._config = config
        self._decoder = LengthPrefixDecoder(max_frame_size)
        self._high_water = high_water
        self._on_handle = on_handle
        self._closed_by_reason = closed_by_reason
        self._transport: asyncio.Transport | None = None
        self.handle: LinkHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = cast(tuple[Any, ...], transport.get_extra_info("peername"))
        self.handle = LinkHandle(
            Link(self._config),
            peer[:2],
            self._write,
            on_closed=self._handle_closed,
            high_water=self._high_water,
        )
        self._on_handle(self.handle)

    def data_received(self, data: bytes) -> None:
        if self.handle is None:
            return
        try:
            frames = self._decoder.feed(data)
        except FramingError as err:
            self.handle.transport_lost(err.reason)
            return
        for datagram in frames:
            self.handle.datagram_received(datagram)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.handle is not None:
            self.handle.transport_lost("connection_lost" if exc is None else "connection_error")

    def _write(self, datagram: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(frame(datagram))

    def _handle_closed(self, handle: LinkHandle) -> None:
        self._closed_by_reason[handle.close_reason or "unknown"] += 1
        if self._transport is not None:
            self._transport.close()


async def tcp_connect(
    host: str,
    port: int,
    *,
    config: LinkConfig | None = None,
    max_frame_size: int | None = None,
    high_water: int = DEFAULT_HIGH_WATER,
) -> LinkHandle:
    """Open a TCP connection to ``host:port`` and return the link running over it."""
    cfg = config or LinkConfig()
    handles: list[LinkHandle] = []
    loop = asyncio.get_running_loop()
    await loop.create_connection(
        lambda: _LinkStreamProtocol(
            cfg, max_frame_size or cfg.mtu, high_water, handles.append, Counter()
        ),
        host,
        port,
    )
    return handles[0]


class TcpListener:
    """A TCP server: every accepted connection is one link."""

    def __init__(
        self,
        config: LinkConfig | None = None,
        *,
        max_frame_size: int | None = None,
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        """Prefer :meth:`listen`, which also opens the server socket."""
        self.config = config or LinkConfig()
        self.max_frame_size = max_frame_size or self.config.mtu
        self.high_water = high_water
        self.closed_by_reason: Counter[str] = Counter()
        self._incoming: asyncio.Queue[LinkHandle] = asyncio.Queue()
        self._handles: set[LinkHandle] = set()
        self._server: asyncio.Server | None = None

    @classmethod
    async def listen(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        config: LinkConfig | None = None,
        max_frame_size: int | None = None,
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> TcpListener:
        """Listen on ``host:port`` (port 0 = any)."""
        listener = cls(config, max_frame_size=max_frame_size, high_water=high_water)
        loop = asyncio.get_running_loop()
        listener._server = await loop.create_server(listener._protocol, host, port)
        return listener

    @property
    def local_address(self) -> tuple[str, int]:
        """``(host, port)`` of the listening socket."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("listener is not open")
        name = self._server.sockets[0].getsockname()
        return name[0], name[1]

    async def accept(self) -> LinkHandle:
        """Wait for the next accepted connection's link."""
        return await self._incoming.get()

    def close(self) -> None:
        """Close every accepted link and stop listening."""
        for handle in list(self._handles):
            handle.close()
        if self._server is not None:
            self._server.close()

    async def wait_closed(self) -> None:
        """Wait until the listening socket is closed (after :meth:`close`)."""
        if self._server is not None:
            await self._server.wait_closed()

    def _protocol(self) -> _LinkStreamProtocol:
        return _LinkStreamProtocol(
            self.config,
            self.max_frame_size,
            self.high_water,
            self._accepted,
            self.closed_by_reason,
        )

    def _accepted(self, handle: LinkHandle) -> None:
        self._handles = {h for h in self._handles if not h.closed}
        self._handles.add(handle)
        self._incoming.put_nowait(handle)
