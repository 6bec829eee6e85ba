"""One secure connection as seen by asyncio code: :class:`PeerConnection`.

A :class:`PeerConnection` wraps one sans-I/O
:class:`~hopline.connection.Connection`: after anything happens to the core
(a datagram in, a timer, a send) :meth:`PeerConnection.service` sends what
the core produced, turns its events into future results and queue items,
and re-arms the single timer the core asks for. The node that owns the
connection (an :class:`~hopline.runtime.endpoint.Endpoint`) receives its
requests and notices and forgets it when it closes.

The errors callers see are defined here: :class:`ConnectError` (handshake
failed, with the reason), :class:`RequestTimeout`, :class:`ConnectionLost`,
:class:`RequestError` (the peer answered with an error reply), and
:class:`ServiceError`, which a request handler raises to answer with one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from hopline.connection import (
    ChannelDataReceived,
    Closed,
    Connection,
    ConnectionClosedError,
    Established,
    MediaReceived,
    MessageReceived,
    PeerIdentity,
    ReplyReceived,
    RequestFailed,
)
from hopline.runtime.timer import CoreTimer
from hopline.wire import ErrorCode, ErrorReply, Message

Addr = tuple[str, int]
INCOMING_QUEUE = 1024


class Owner(Protocol):
    """What a PeerConnection needs from the node that owns it."""

    def on_message(self, pc: PeerConnection, message: Message) -> None:
        """A request or notice arrived."""

    def on_datagram(self, pc: PeerConnection, data: bytes) -> None:
        """A datagram arrived on the unreliable channel."""

    def on_channel_data(self, pc: PeerConnection, channel: int, payload: bytes) -> None:
        """A channel datagram arrived (relay traffic, docs/protocol.md "Relay")."""

    def queue(self, q: asyncio.Queue[Any], item: object, reason: str) -> None:
        """Put on a bounded queue, counting what does not fit."""

    def forget(self, pc: PeerConnection) -> None:
        """The connection closed."""


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

    endpoint: Owner
    core: Connection
    address: Addr
    send_datagram: Callable[[bytes], None]
    established: asyncio.Future[PeerIdentity] = field(init=False)
    closed: asyncio.Future[str] = field(init=False)
    incoming: asyncio.Queue[Message] = field(init=False)
    media: asyncio.Queue[bytes] = field(init=False)
    _waiters: dict[int, asyncio.Future[Message]] = field(default_factory=dict)
    _timer: CoreTimer = field(init=False)

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.established, self.closed = loop.create_future(), loop.create_future()
        # a server-side handshake that fails has nobody awaiting it: its reason
        # lives on in ``closed`` and the core's counters
        self.established.add_done_callback(_retrieve)
        self._timer = CoreTimer(self._on_timer, lazy=True)  # re-armed after every datagram
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
        self._timer.arm(self.core.get_timer())

    def _on_timer(self) -> None:
        self.core.handle_timer(time.time())
        self.service()

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ChannelDataReceived):  # the most frequent first
            self.endpoint.on_channel_data(self, event.channel, event.payload)
        elif isinstance(event, MediaReceived):
            self.endpoint.on_datagram(self, event.data)
        elif isinstance(event, Established) and not self.established.done():
            self.established.set_result(event.peer)
        elif isinstance(event, MessageReceived):
            self.endpoint.on_message(self, event.message)
        elif isinstance(event, ReplyReceived):
            waiter = self._waiters.pop(event.request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event.message)
        elif isinstance(event, RequestFailed):
            self._fail(event.request_id, event.reason)
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
        self._timer.cancel()
        self.endpoint.forget(self)


def _retrieve(future: asyncio.Future[PeerIdentity]) -> None:
    if not future.cancelled():
        future.exception()
