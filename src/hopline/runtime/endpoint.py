"""Secure connections over real sockets: the asyncio shell around ``Connection``.

An :class:`Endpoint` owns one UDP socket (and optionally a TCP listener on the
same port) and runs one sans-I/O :class:`~hopline.connection.Connection` per
peer. Everything protocol-shaped happens in the core; this module only moves
datagrams between sockets and cores, arms one timer per connection from
``get_timer()``, and turns core events into awaitables:

* :meth:`Endpoint.connect` starts a handshake and waits until the peer is
  verified, returning a :class:`PeerConnection`;
* :meth:`PeerConnection.request` sends a request and awaits its reply (an
  error reply raises :class:`RequestError`);
* incoming requests and notices go to the endpoint's ``handler``; a request's
  handler returns the reply, which is sent back with the request's id.

``now`` for the cores is wall-clock time (certificates carry wall-clock
validity); timers are armed as delays from it. Datagrams nobody can use are
dropped and counted in :attr:`Endpoint.dropped`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hopline.connection import (
    Closed,
    Connection,
    ConnectionClosedError,
    ConnectionConfig,
    Established,
    Expectation,
    MediaReceived,
    MessageReceived,
    PeerIdentity,
    ReplyReceived,
    RequestFailed,
)
from hopline.connection import handshake as hs
from hopline.crypto import CryptoError
from hopline.crypto.noise import DHKeyPair
from hopline.identity import CertificateVerifier
from hopline.runtime.sockets import enlarge_buffers
from hopline.runtime.tcp import FramingError, LengthPrefixDecoder, frame
from hopline.wire import Address, ErrorCode, ErrorReply, Kind, Message
from hopline.wire.commands import Ping, Pong

log = logging.getLogger("hopline.endpoint")
Addr = tuple[str, int]
Handler = Callable[["PeerConnection", Message], Awaitable[Message | None]]
INCOMING_QUEUE = 1024


class EndpointError(Exception):
    """Base of the runtime's connection errors."""


class ConnectError(EndpointError):
    """The handshake failed; ``reason`` says why (e.g. ``certificate:expired``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"could not connect: {reason}")
        self.reason = reason


class ConnectionLost(EndpointError):
    """The connection closed before the reply came."""


class RequestTimeout(EndpointError):
    """No reply within the request's timeout."""


class RequestError(EndpointError):
    """The peer answered with an error reply."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"{reply.code} {reply.reason}".strip())
        self.code = reply.code
        self.reason = reply.reason
        self.retry_after_ms = reply.retry_after_ms


class ServiceError(Exception):
    """Raised by a handler to answer a request with an error reply."""

    def __init__(self, code: ErrorCode, reason: str, retry_after_ms: int | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.retry_after_ms = code, reason, retry_after_ms


@dataclass(eq=False)
class PeerConnection:
    """The async face of one connection."""

    endpoint: Endpoint
    core: Connection
    address: Addr
    send_datagram: Callable[[bytes], None]
    established: asyncio.Future[PeerIdentity] = field(init=False)
    closed: asyncio.Future[str] = field(init=False)
    incoming: asyncio.Queue[Message] = field(init=False)
    media: asyncio.Queue[bytes] = field(init=False)
    _waiters: dict[int, asyncio.Future[Message]] = field(default_factory=dict)
    _timer: asyncio.TimerHandle | None = None

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.established, self.closed = loop.create_future(), loop.create_future()
        # a server-side handshake that fails has nobody awaiting it: its reason
        # lives on in ``closed`` and the core's counters
        self.established.add_done_callback(_retrieve)
        self.incoming = asyncio.Queue(INCOMING_QUEUE)
        self.media = asyncio.Queue(INCOMING_QUEUE)

    @property
    def peer(self) -> PeerIdentity | None:
        """Who the peer proved to be (after the handshake)."""
        return self.core.peer

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """Send a request and return its reply; error replies raise RequestError."""
        try:
            request_id = self.core.request(message, time.time(), timeout)
        except ConnectionClosedError as exc:
            raise ConnectionLost(str(exc)) from None
        waiter: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[request_id] = waiter
        self.service()
        reply = await waiter
        if isinstance(reply, ErrorReply):
            raise RequestError(reply)
        return reply

    def notify(self, message: Message) -> None:
        """Send a notice (no reply expected)."""
        try:
            self.core.send(message, time.time())
        except ConnectionClosedError as exc:
            raise ConnectionLost(str(exc)) from None
        self.service()

    def send_media(self, data: bytes) -> None:
        """Send one datagram on the unreliable channel."""
        try:
            self.core.send_media(data, time.time())
        except ConnectionClosedError as exc:
            raise ConnectionLost(str(exc)) from None
        self.service()

    def close(self) -> None:
        """Close the connection."""
        self.core.close(time.time())
        self.service()

    def service(self) -> None:
        """Send what the core has, hand its events out, re-arm its timer."""
        for datagram in self.core.datagrams_to_send(time.time()):
            self.send_datagram(datagram)
        while (event := self.core.next_event()) is not None:
            self._dispatch(event)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.core.get_timer()
        if deadline is not None:
            delay = max(0.0, deadline - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.core.handle_timer(time.time())
        self.service()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, Established) and not self.established.done():
            self.established.set_result(event.peer)
        elif isinstance(event, MessageReceived):
            self.endpoint.on_message(self, event.message)
        elif isinstance(event, ReplyReceived):
            waiter = self._waiters.pop(event.request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.message)
        elif isinstance(event, RequestFailed):
            self._fail(event.request_id, event.reason)
        elif isinstance(event, MediaReceived):
            self.endpoint.queue(self.media, event.data, "media-overflow")
        elif isinstance(event, Closed):
            self._on_closed(event.reason)

    def _fail(self, request_id: int, reason: str) -> None:
        waiter = self._waiters.pop(request_id, None)
        if waiter is not None and not waiter.done():
            if reason == "timeout":
                waiter.set_exception(RequestTimeout(f"no reply to request {request_id}"))
            else:
                why = self.core.close_reason or reason
                waiter.set_exception(ConnectionLost(f"connection closed ({why})"))

    def _on_closed(self, reason: str) -> None:
        if not self.established.done():
            self.established.set_exception(ConnectError(reason))
        if not self.closed.done():
            self.closed.set_result(reason)
        if self._timer is not None:
            self._timer.cancel()
        self.endpoint.forget(self)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.endpoint.udp_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        self.endpoint.dropped[f"socket:{type(exc).__name__}"] += 1


class Endpoint:
    """One node's sockets and all its secure connections."""

    def __init__(
        self,
        *,
        static: DHKeyPair,
        certificate: bytes | None,
        verifier: CertificateVerifier | None,
        accept: Expectation | None = None,
        handler: Handler | None = None,
        config: ConnectionConfig | None = None,
        max_handshakes: int = 1024,
    ) -> None:
        self.static, self.certificate, self.verifier = static, certificate, verifier
        self.accept_expectation = accept
        self.handler = handler
        self.config = config or ConnectionConfig()
        self.max_handshakes = max_handshakes
        self.dropped: Counter[str] = Counter()
        self.connections: dict[tuple[str, Addr], PeerConnection] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ sockets

    async def open_udp(self, host: str = "127.0.0.1", port: int = 0) -> Addr:
        """Bind the UDP socket; return its address."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(host, port), family=family
        )
        self._udp = transport
        enlarge_buffers(transport)
        sockname = transport.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    async def open_tcp(self, host: str, port: int) -> Addr:
        """Listen for TCP connections (for peers whose UDP is blocked)."""
        self._tcp = await asyncio.start_server(self._tcp_accepted, host, port)
        sockname = self._tcp.sockets[0].getsockname()
        return (sockname[0], sockname[1])

    @property
    def local_address(self) -> Addr | None:
        """The UDP socket's address, once bound."""
        if self._udp is None:
            return None
        sockname = self._udp.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    def close(self) -> None:
        """Close every connection and socket."""
        for pc in list(self.connections.values()):
            pc.close()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------ connecting

    async def connect(
        self, address: Addr, expect: Expectation, *, tcp: bool = False, timeout: float = 10.0
    ) -> PeerConnection:
        """Open a verified connection to ``address`` (UDP, or TCP with ``tcp=True``)."""
        core = Connection(
            initiator=True,
            static=self.static,
            certificate=self.certificate,
            verifier=self.verifier,
            expect=expect,
            now=time.time(),
            config=self.config,
        )
        if tcp:
            pc = await self._connect_tcp(address, core)
        else:
            if self._udp is None:
                await self.open_udp("::" if ":" in address[0] else "0.0.0.0")  # noqa: S104
            pc = self._add("udp", address, core)
        pc.service()
        try:
            await asyncio.wait_for(asyncio.shield(pc.established), timeout)
        except TimeoutError:
            pc.close()
            raise ConnectError("timeout") from None
        return pc

    def _add(self, kind: str, address: Addr, core: Connection) -> PeerConnection:
        sender = self._udp_sender(address) if kind == "udp" else _never_send
        pc = PeerConnection(self, core, address, sender)
        old = self.connections.get((kind, address))
        self.connections[(kind, address)] = pc
        if old is not None:
            old.close()
        return pc

    def _udp_sender(self, address: Addr) -> Callable[[bytes], None]:
        def send(datagram: bytes) -> None:
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(datagram, address)

        return send

    def forget(self, pc: PeerConnection) -> None:
        """Drop a closed connection from the table."""
        for key, value in list(self.connections.items()):
            if value is pc:
                del self.connections[key]

    # ------------------------------------------------------------ receiving

    def udp_received(self, data: bytes, address: Addr) -> None:
        """Route one datagram to its connection, or accept a new handshake."""
        pc = self.connections.get(("udp", address))
        if pc is not None and pc.core.receive_datagram(data, time.time()):
            pc.service()
            return
        accepted = self._accept(data, address, "udp")
        if accepted is not None:
            accepted.service()

    def _accept(self, data: bytes, address: Addr, kind: str) -> PeerConnection | None:
        if self.accept_expectation is None or not hs.looks_like_handshake(data):
            self.dropped["unknown-peer"] += 1
            return None
        handshaking = sum(1 for pc in self.connections.values() if not pc.core.established)
        if handshaking >= self.max_handshakes:
            self.dropped["busy"] += 1
            return None
        try:
            core = Connection.accept(
                data,
                static=self.static,
                certificate=self.certificate,
                verifier=self.verifier,
                expect=self.accept_expectation,
                now=time.time(),
                config=self.config,
            )
        except (hs.FramingError, CryptoError) as exc:
            self.dropped[f"init:{getattr(exc, 'reason', 'bad')}"] += 1
            return None
        return self._add(kind, address, core)

    def on_message(self, pc: PeerConnection, message: Message) -> None:
        """A request or notice arrived: answer pings, run the handler, or queue it."""
        if isinstance(message, Ping):
            observed = Address.of(*pc.address) if pc.address[0] else None
            pong = Pong(nonce=message.nonce, sent_at_us=message.sent_at_us, observed=observed)
            self._reply(pc, message, pong)
            return
        if self.handler is None:
            self.queue(pc.incoming, message, "incoming-overflow")
            return
        task = asyncio.get_running_loop().create_task(self._handle(pc, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def queue(self, q: asyncio.Queue[Any], item: object, reason: str) -> None:
        """Put on a bounded queue, counting what does not fit."""
        try:
            q.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped[reason] += 1

    async def _handle(self, pc: PeerConnection, message: Message) -> None:
        assert self.handler is not None
        try:
            reply = await self.handler(pc, message)
        except ServiceError as exc:
            reply = ErrorReply(code=exc.code, reason=exc.reason, retry_after_ms=exc.retry_after_ms)
        except Exception:
            log.exception("handler failed on %s", message.NAME)
            self.dropped["handler-error"] += 1
            reply = ErrorReply(code=ErrorCode.INTERNAL, reason="internal error")
        if message.KIND is Kind.REQUEST and reply is not None:
            if isinstance(reply, ErrorReply):
                reply = ErrorReply(
                    code=reply.code,
                    reason=reply.reason,
                    retry_after_ms=reply.retry_after_ms,
                    failed_command=message.command_id,
                )
            self._reply(pc, message, reply)

    def _reply(self, pc: PeerConnection, request: Message, reply: Message) -> None:
        try:
            pc.core.reply(request, reply, time.time())
        except ConnectionClosedError:
            self.dropped["reply-after-close"] += 1  # the peer left before we answered
            return
        pc.service()

    # ------------------------------------------------------------ TCP

    async def _connect_tcp(self, address: Addr, core: Connection) -> PeerConnection:
        loop = asyncio.get_running_loop()
        decoder = LengthPrefixDecoder(hs.MAX_HANDSHAKE_SIZE)
        transport, protocol = await loop.create_connection(
            lambda: _Stream(self, decoder, None), address[0], address[1]
        )
        pc = PeerConnection(self, core, address, lambda d: transport.write(frame(d)))
        protocol.pc = pc
        self.connections[("tcp", address)] = pc
        pc.closed.add_done_callback(lambda _: transport.close())
        return pc

    async def _tcp_accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        peer = writer.get_extra_info("peername")
        address: Addr = (peer[0], peer[1])
        decoder = LengthPrefixDecoder(hs.MAX_HANDSHAKE_SIZE)
        pc: PeerConnection | None = None
        try:
            while data := await reader.read(65536):
                for datagram in decoder.feed(data):
                    pc = self._tcp_datagram(pc, datagram, address, writer)
        except FramingError as exc:
            self.dropped[f"tcp:{exc.reason}"] += 1
        finally:
            if pc is not None:
                pc.close()
            writer.close()

    def _tcp_datagram(
        self,
        pc: PeerConnection | None,
        datagram: bytes,
        address: Addr,
        writer: asyncio.StreamWriter,
    ) -> PeerConnection | None:
        if pc is None:
            pc = self._accept(datagram, address, "tcp")
            if pc is None:
                raise FramingError("first frame is not a handshake", reason="bad_first_frame")
            pc.send_datagram = lambda d: writer.write(frame(d))
        elif pc.core.receive_datagram(datagram, time.time()):
            pass
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


def _retrieve(future: asyncio.Future[PeerIdentity]) -> None:
    if not future.cancelled():
        future.exception()


def _never_send(datagram: bytes) -> None:
    raise RuntimeError("this connection has no transport yet")
