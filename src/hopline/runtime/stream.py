"""Secure connections over TCP, for peers whose UDP is blocked.

Each TCP connection carries exactly one :class:`~hopline.connection.Connection`:
the same handshake and sealed datagrams as over UDP, each framed with a 2-byte
length (:func:`hopline.runtime.tcp.frame`). A server's first frame on a new
TCP connection must be a handshake init; bad framing closes the connection
and is counted.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from hopline.connection import Connection
from hopline.connection import handshake as hs
from hopline.runtime.peer import Addr, PeerConnection
from hopline.runtime.tcp import FramingError, LengthPrefixDecoder, frame

if TYPE_CHECKING:
    from hopline.runtime.endpoint import Endpoint


async def connect_tcp(endpoint: Endpoint, address: Addr, core: Connection) -> PeerConnection:
    """Open a TCP connection to ``address`` carrying ``core``."""
    loop = asyncio.get_running_loop()
    decoder = LengthPrefixDecoder(hs.MAX_HANDSHAKE_SIZE)
    transport, protocol = await loop.create_connection(
        lambda: _Stream(endpoint, decoder, None), address[0], address[1]
    )
    pc = PeerConnection(endpoint, core, address, lambda d: transport.write(frame(d)))
    protocol.pc = pc
    endpoint.connections[("tcp", address)] = pc
    pc.closed.add_done_callback(lambda _: transport.close())
    return pc


async def serve_tcp(
    endpoint: Endpoint, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Run one accepted TCP connection until it closes."""
    peer = writer.get_extra_info("peername")
    address: Addr = (peer[0], peer[1])
    decoder = LengthPrefixDecoder(hs.MAX_HANDSHAKE_SIZE)
    pc: PeerConnection | None = None
    try:
        while data := await reader.read(65536):
            for datagram in decoder.feed(data):
                pc = _on_frame(endpoint, pc, datagram, address, writer)
    except FramingError as exc:
        endpoint.dropped[f"tcp:{exc.reason}"] += 1
    finally:
        if pc is not None:
            pc.close()
        writer.close()


def _on_frame(
    endpoint: Endpoint,
    pc: PeerConnection | None,
    datagram: bytes,
    address: Addr,
    writer: asyncio.StreamWriter,
) -> PeerConnection:
    if pc is None:
        pc = endpoint.accept_handshake(datagram, address, "tcp")
        if pc is None:
            raise FramingError("first frame is not a handshake", reason="bad_first_frame")
        pc.send_datagram = lambda d: writer.write(frame(d))
    else:
        pc.core.receive_datagram(datagram, time.time())  # refusals are counted by the core
    pc.service()
    return pc


class _Stream(asyncio.Protocol):
    def __init__(
        self, endpoint: Endpoint, decoder: LengthPrefixDecoder, pc: PeerConnection | None
    ) -> None:
        self.endpoint, self.decoder, self.pc = endpoint, decoder, pc

    def data_received(self, data: bytes) -> None:
        assert self.pc is not None
        try:
            datagrams = self.decoder.feed(data)
        except FramingError as exc:
            self.endpoint.dropped[f"tcp:{exc.reason}"] += 1
            self.pc.close()
            return
        for datagram in datagrams:
            self.pc.core.receive_datagram(datagram, time.time())
        self.pc.service()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.pc is not None and not self.pc.closed.done():
            self.pc.core.close(time.time(), "tcp-closed")
            self.pc.service()
