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
dropped and counted in :attr:`Endpoint.dropped`, after one last offer to
``raw_handler`` (a datagram that is neither a connection's nor a handshake
init: the supernode's STUN service, :mod:`hopline.nat.service`, takes STUN
messages there and answers with :meth:`Endpoint.send_raw`).

Received datagrams are fed to their connection's core at once, but the
connection is *serviced* (its events handed out, its replies and ACKs sent,
its timer re-armed) once per event-loop turn for every datagram that turn
brought: a burst of a bulk transfer costs one service, one ACK and one timer
arming instead of one each per datagram. Nothing waits longer than the end of
the current loop turn.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from hopline.connection import (
    Connection,
    ConnectionClosedError,
    ConnectionConfig,
    Expectation,
    channel_data_frame,
)
from hopline.connection import handshake as hs
from hopline.connection.forwarding import Drop, route
from hopline.crypto import CryptoError
from hopline.crypto.noise import DHKeyPair
from hopline.identity import CertificateVerifier, parse_certificate
from hopline.runtime.peer import (
    Addr,
    ConnectError,
    ConnectionLost,
    EndpointError,
    PeerConnection,
    RequestError,
    RequestTimeout,
    ServiceError,
)
from hopline.runtime.sockets import enlarge_buffers
from hopline.runtime.stream import connect_tcp, serve_tcp
from hopline.wire import Address, ErrorCode, ErrorReply, Kind, Message
from hopline.wire.commands import Forward, Ping, Pong

__all__ = [
    "ConnectError",
    "ConnectionLost",
    "Endpoint",
    "EndpointError",
    "Handler",
    "PeerConnection",
    "RequestError",
    "RequestTimeout",
    "ServiceError",
    "request_once",
]

LISTEN_TRIES = 8  # UDP ports tried for a port-0 listen whose port TCP already uses
log = logging.getLogger("hopline.endpoint")
SUPERSEDED = "superseded"  # our init lost a simultaneous open; the peer's took over
Handler = Callable[[PeerConnection, Message], Awaitable[Message | None]]


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.endpoint.udp_received(data, (_unmapped(addr[0]), addr[1]))

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
        forwarding: bool = False,
        datagram_handler: Callable[[PeerConnection, bytes], None] | None = None,
    ) -> None:
        self.static, self.certificate, self.verifier = static, certificate, verifier
        self.accept_expectation = accept
        self.handler = handler
        self.config = config or ConnectionConfig()
        self.max_handshakes = max_handshakes
        self.forwarding = forwarding
        self.datagram_handler = datagram_handler
        # channel datagrams (relay traffic); without one they go on as channel-data frames
        self.channel_handler: Callable[[PeerConnection, int, bytes], None] | None = None
        # datagrams that are neither a connection's nor an init (STUN): True = taken
        self.raw_handler: Callable[[bytes, Addr], bool] | None = None
        self.on_accept: Callable[[PeerConnection], None] | None = None  # a peer's new connection
        self.own_name = parse_certificate(certificate)[0].subject if certificate else None
        self.dropped: Counter[str] = Counter()
        self.forwarded = 0  # envelopes passed on
        self.forwarded_bytes = 0  # their payload bytes
        self.connections: dict[tuple[str, Addr], PeerConnection] = {}
        # handshakes from an address that already has an established connection
        self._replacements: dict[tuple[str, Addr], PeerConnection] = {}
        # other bases than the UDP socket ("relay:<id>"): how to send to a peer through them
        self.bases: dict[str, Callable[[bytes, Addr], None]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._dual = False  # the UDP socket is dual-stack: IPv4 peers go to ::ffff:a.b.c.d
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._received: dict[PeerConnection, None] = {}  # to service at the end of this turn

    # ------------------------------------------------------------ sockets

    async def open_udp(self, host: str = "127.0.0.1", port: int = 0, *, dual: bool = False) -> Addr:
        """Bind the UDP socket; return its address.

        ``dual`` (with an IPv6 host such as ``"::"``): one socket for IPv6 and
        IPv4 (IPV6_V6ONLY off, also the Linux default). On such a socket IPv4
        peers keep their plain addresses: ``::ffff:`` is added and removed here.
        """
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6 and dual:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        transport, _ = await loop.create_datagram_endpoint(lambda: _Datagrams(self), sock=sock)
        self._dual = family == socket.AF_INET6 and not sock.getsockopt(
            socket.IPPROTO_IPV6, socket.IPV6_V6ONLY
        )
        self._udp = transport
        enlarge_buffers(transport)
        sockname = transport.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    async def listen(self, address: Address) -> Addr:
        """Serve on UDP and TCP on the same port (port 0: any); return the address.

        With port 0 the kernel picks a free UDP port, which TCP may already
        use: then another port is tried (up to :data:`LISTEN_TRIES` times).
        """
        host, port = address.as_tuple()
        for _ in range(LISTEN_TRIES - 1 if port == 0 else 0):
            bound = await self.open_udp(host, port)
            try:
                await self.open_tcp(host, bound[1])
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                self._close_udp()
                continue
            return bound
        bound = await self.open_udp(host, port)
        await self.open_tcp(host, bound[1])
        return bound

    def _close_udp(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    async def open_tcp(self, host: str, port: int) -> Addr:
        """Listen for TCP connections (for peers whose UDP is blocked)."""
        self._tcp = await asyncio.start_server(partial(serve_tcp, self), host, port)
        sockname = self._tcp.sockets[0].getsockname()
        return (sockname[0], sockname[1])

    def set_certificate(self, certificate: bytes | None) -> None:
        """Present another certificate in future handshakes (after enrollment or renewal)."""
        self.certificate = certificate
        self.own_name = parse_certificate(certificate)[0].subject if certificate else None

    @property
    def local_address(self) -> Addr | None:
        """The UDP socket's address, once bound."""
        if self._udp is None:
            return None
        sockname = self._udp.get_extra_info("sockname")
        return (sockname[0], sockname[1])

    def close(self) -> None:
        """Close every connection and socket."""
        for pc in [*self.connections.values(), *self._replacements.values()]:
            pc.close()
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------ connecting

    async def connect(
        self,
        address: Addr,
        expect: Expectation,
        *,
        tcp: bool = False,
        timeout: float = 10.0,
        via: str | None = None,
    ) -> PeerConnection:
        """Open a verified connection to ``address`` (UDP, or TCP with ``tcp=True``).

        ``via`` names a base added with :meth:`add_base` (a relay allocation):
        the connection's datagrams go out through it.
        """
        core = Connection(
            initiator=True,
            static=self.static,
            certificate=self.certificate,
            verifier=self.verifier,
            expect=expect,
            now=time.time(),
            config=self.config,
        )
        if via is not None:
            pc = self._add(via, address, core)
        elif tcp:
            pc = await connect_tcp(self, address, core)
        else:
            if self._udp is None:
                await self.open_udp("::" if ":" in address[0] else "0.0.0.0")  # noqa: S104
            pc = self._add("udp", address, core)
        pc.service()
        try:
            key = (via or ("tcp" if tcp else "udp"), address)
            return await asyncio.wait_for(self._established(key, pc, expect), timeout)
        except TimeoutError:
            pc.close()
            raise ConnectError("timeout") from None

    async def _established(
        self, key: tuple[str, Addr], pc: PeerConnection, expect: Expectation
    ) -> PeerConnection:
        """Wait for ``pc``, or for the connection that superseded it (simultaneous open)."""
        while True:
            try:
                await asyncio.shield(pc.established)
            except ConnectError as exc:
                successor = self.connections.get(key)
                if exc.reason != SUPERSEDED or successor is None or successor is pc:
                    raise
                pc = successor
                continue
            if not _satisfies(expect, pc):
                pc.close()
                raise ConnectError("certificate:unexpected-peer")
            return pc

    def _add(self, kind: str, address: Addr, core: Connection) -> PeerConnection:
        """Track a new connection; an established one to the same address stays
        in charge until the new one completes its handshake (see _promote)."""
        key = (kind, address)
        sender = self._udp_sender(address) if kind == "udp" else _never_send
        if kind in self.bases:
            sender = _base_sender(self.bases[kind], address)
        pc = PeerConnection(self, core, address, sender)
        old = self.connections.get(key)
        if old is not None and old.core.established and not core.initiator:
            stale = self._replacements.pop(key, None)
            if stale is not None:
                stale.close()
            self._replacements[key] = pc
            pc.established.add_done_callback(lambda _: self._promote(key, pc))
            return pc
        self.connections[key] = pc
        if old is not None:
            old.close()
        return pc

    def _promote(self, key: tuple[str, Addr], pc: PeerConnection) -> None:
        """A replacement completed its handshake: the peer really restarted."""
        if self._replacements.get(key) is not pc or pc.closed.done():
            return
        del self._replacements[key]
        old = self.connections.get(key)
        self.connections[key] = pc
        if old is not None:
            old.close()

    def _udp_sender(self, address: Addr) -> Callable[[bytes], None]:
        target = (
            ("::ffff:" + address[0], address[1]) if self._dual and "." in address[0] else address
        )

        def send(datagram: bytes) -> None:
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(datagram, target)

        return send

    def send_raw(self, datagram: bytes, address: Addr) -> None:
        """Send a datagram outside any connection (a STUN answer) from the UDP socket."""
        self._udp_sender(address)(datagram)

    def add_base(self, name: str, send: Callable[[bytes, Addr], None]) -> None:
        """Let connections run through ``name`` (``send(datagram, address)``);
        what arrives through it is passed to :meth:`base_received`."""
        self.bases[name] = send

    def remove_base(self, name: str) -> None:
        """The base is gone: close the connections that ran through it."""
        self.bases.pop(name, None)
        for table in (self.connections, self._replacements):
            for key, pc in list(table.items()):
                if key[0] == name:
                    pc.close()

    def forget(self, pc: PeerConnection) -> None:
        """Drop a closed connection from the tables."""
        for table in (self.connections, self._replacements):
            for key, value in list(table.items()):
                if value is pc:
                    del table[key]

    # ------------------------------------------------------------ receiving

    def udp_received(self, data: bytes, address: Addr) -> None:
        """Route one datagram to its connection, or accept a new handshake."""
        if self.base_received("udp", data, address):
            return
        if self.raw_handler is not None and self.raw_handler(data, address):
            return
        key = ("udp", address)
        self.dropped["unknown-peer" if key not in self.connections else "unreadable"] += 1

    def base_received(self, base: str, data: bytes, address: Addr) -> bool:
        """A datagram from ``address`` through ``base``: to its connection, or a
        handshake init accepted; False if it is neither (nothing counted)."""
        key = (base, address)
        for pc in (self.connections.get(key), self._replacements.get(key)):
            if pc is not None and pc.core.receive_datagram(data, time.time()):
                self._service_soon(pc)
                return True
        if not hs.looks_like_init(data):
            return False
        if not self._yield_to(key, data):
            return True
        accepted = self.accept_handshake(data, address, base)
        if accepted is not None:
            accepted.service()
        return True

    def _service_soon(self, pc: PeerConnection) -> None:
        """Service ``pc`` at the end of this loop turn, with whatever else the turn brings."""
        if not self._received:
            asyncio.get_running_loop().call_soon(self._service_received)
        self._received[pc] = None

    def _service_received(self) -> None:
        received, self._received = self._received, {}
        for pc in received:
            pc.service()

    def _yield_to(self, key: tuple[str, Addr], init: bytes) -> bool:
        """Simultaneous open: both sides sent an init. Both see the same two
        inits, so the sender of the larger one stays initiator and the other
        side abandons its own attempt and answers. True: accept ``init``."""
        ours = self.connections.get(key)
        sent = ours.core.sent_init if ours is not None else None
        if ours is None or sent is None:
            return True
        if sent > init:
            self.dropped["simultaneous-open"] += 1  # the peer will answer ours
            return False
        ours.core.close(time.time(), SUPERSEDED)
        ours.service()
        return True

    def accept_handshake(self, data: bytes, address: Addr, kind: str) -> PeerConnection | None:
        """A responder connection for a handshake init, or None (counted) if refused."""
        if self.accept_expectation is None or not hs.looks_like_init(data):
            self.dropped["unknown-peer"] += 1
            return None
        waiting = [*self.connections.values(), *self._replacements.values()]
        handshaking = sum(1 for pc in waiting if not pc.core.established)
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
        pc = self._add(kind, address, core)
        if self.on_accept is not None:
            self.on_accept(pc)
        return pc

    def on_message(self, pc: PeerConnection, message: Message) -> None:
        """A request or notice arrived: answer pings, run the handler, or queue it."""
        if isinstance(message, Ping):
            observed = Address.of(*pc.address) if pc.address[0] else None
            pong = Pong(nonce=message.nonce, sent_at_us=message.sent_at_us, observed=observed)
            self._reply(pc, message, pong)
            return
        if isinstance(message, Forward) and self.forwarding and self._forward(pc, message):
            return
        handler = self.handler
        if handler is None:
            self.queue(pc.incoming, message, "incoming-overflow")
            return
        # the handler of this moment: another may be installed (or none) before it runs
        task = asyncio.get_running_loop().create_task(self._handle(handler, pc, message))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _forward(self, pc: PeerConnection, envelope: Forward) -> bool:
        """Pass an envelope on; False if it is for this node itself."""
        peers = {key: other.peer for key, other in self.connections.items()}
        decision = route(envelope, pc.peer, peers, self.own_name)
        if isinstance(decision, Drop):
            if decision.reason == "local":
                return False
            self.dropped[f"forward:{decision.reason}"] += 1
            return True
        target = self.connections[decision.key]
        try:
            target.notify(decision.envelope)
        except ConnectionLost:
            self.dropped["forward:closed"] += 1
        else:
            self.forwarded += 1
            self.forwarded_bytes += len(decision.envelope.payload)
        return True

    def on_datagram(self, pc: PeerConnection, data: bytes) -> None:
        """An unreliable-channel datagram: to the datagram handler, or queued."""
        if self.datagram_handler is not None:
            self.datagram_handler(pc, data)
        else:
            self.queue(pc.media, data, "media-overflow")

    def on_channel_data(self, pc: PeerConnection, channel: int, payload: bytes) -> None:
        """A channel datagram: to the channel handler, else on as a channel-data frame."""
        if self.channel_handler is not None:
            self.channel_handler(pc, channel, payload)
        else:
            self.on_datagram(pc, channel_data_frame(channel, payload))

    def queue(self, q: asyncio.Queue[Any], item: object, reason: str) -> None:
        """Put on a bounded queue, counting what does not fit."""
        try:
            q.put_nowait(item)
        except asyncio.QueueFull:
            self.dropped[reason] += 1

    async def _handle(self, handler: Handler, pc: PeerConnection, message: Message) -> None:
        try:
            reply = await handler(pc, message)
        except ServiceError as exc:
            reply = ErrorReply(code=exc.code, reason=exc.reason, retry_after_ms=exc.retry_after_ms)
        except Exception:  # a handler bug must not take the node down: logged, counted, 500
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


def _satisfies(expect: Expectation, pc: PeerConnection) -> bool:
    """Whether a connection the peer opened proves what our caller expected."""
    peer = pc.peer
    if peer is None or peer.certificate is None:
        return expect.anonymous_ok
    body = peer.certificate.body
    return (
        (expect.role is None or body.role == expect.role)
        and (expect.subject is None or body.subject == expect.subject.lower())
        and (expect.static_key is None or peer.static_key == expect.static_key)
    )


def _unmapped(host: str) -> str:
    """``::ffff:192.0.2.1`` (an IPv4 peer on a dual-stack socket) as ``192.0.2.1``."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


def _base_sender(send: Callable[[bytes, Addr], None], address: Addr) -> Callable[[bytes], None]:
    return lambda datagram: send(datagram, address)


def _never_send(datagram: bytes) -> None:
    raise RuntimeError("a TCP connection's sender is set when its stream is attached")


async def request_once(
    address: Addr,
    request: Message,
    *,
    static: DHKeyPair,
    certificate: bytes | None,
    verifier: CertificateVerifier,
    expect: Expectation,
    connect_timeout: float = 10.0,
    timeout: float = 30.0,
    bind: str | None = None,
) -> Message:
    """Open a connection, send one request, return its reply, and close.

    ``bind`` chooses the local address to send from (a multi-homed host).
    """
    endpoint = Endpoint(static=static, certificate=certificate, verifier=verifier)
    try:
        if bind is not None:
            await endpoint.open_udp(bind, 0)
        pc = await endpoint.connect(address, expect, timeout=connect_timeout)
        return await pc.request(request, timeout=timeout)
    finally:
        endpoint.close()
