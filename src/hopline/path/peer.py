"""A working path to one peer device: :class:`PeerPath`.

The application holds a :class:`PeerPath` for as long as it talks to a
peer; the :class:`~hopline.path.manager.PathManager` keeps it working
underneath. It holds the current secure connection
(:class:`~hopline.runtime.endpoint.PeerConnection`) and *swaps* it when
the path changes: a relayed path upgraded to a direct one, or a path
re-established after an address change or the loss of a supernode. Every
change is recorded in :attr:`PeerPath.changes`; the object and its queues
stay valid across swaps.

Traffic helpers: :meth:`PeerPath.request` and :meth:`PeerPath.notify` on
the reliable channel (notices from the peer queue up for
:meth:`PeerPath.receive`; its requests go to :attr:`PeerPath.handler`,
with ``echo`` answered by default), :meth:`PeerPath.send_datagram` and
:meth:`PeerPath.recv_datagram` on the unreliable one. A call made while
the path is being re-established waits for the new connection (up to
its timeout). :meth:`PeerPath.describe` is a JSON-able summary.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from hopline.connection.core import DATAGRAM_SIZE
from hopline.relay.framing import RELAYED_DATAGRAM_SIZE
from hopline.runtime.peer import ConnectionLost, EndpointError, PeerConnection
from hopline.wire import Address, ErrorCode, ErrorReply, Message
from hopline.wire.commands import Echo, EchoReply

__all__ = ["PathChange", "PathClosedError", "PeerPath", "RequestHandler"]

QUEUE_SIZE = 1024
MAX_CHANGES = 32
RequestHandler = Callable[[Message], Awaitable[Message | None]]


class PathClosedError(EndpointError):
    """The path is closed for good (the manager closed or gave up on it)."""


@dataclass(frozen=True)
class PathChange:
    """One change of the connection under a path."""

    at: float  # Unix seconds
    reason: str  # established, upgrade, reestablished
    kind: str  # direct, relay, tcp-relay
    local: str
    remote: str


class PeerPath:
    """A bidirectional path to one device of one user (see the module docstring)."""

    def __init__(self, user: str, device_id: bytes, static_key: bytes, *, initiator: bool) -> None:
        self.user, self.device_id, self.static_key = user, device_id, static_key
        self.initiator = initiator
        self.kind = ""
        self.family = ""
        self.local: Address | None = None
        self.remote: Address | None = None
        self.first_packet_ms: float | None = None
        self.established_ms: float | None = None
        self.connection: PeerConnection | None = None
        self.handler: RequestHandler | None = None
        self.changes: deque[PathChange] = deque(maxlen=MAX_CHANGES)
        self.incoming: asyncio.Queue[Message] = asyncio.Queue(QUEUE_SIZE)
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_SIZE)
        self.on_datagram: Callable[[bytes], None] | None = None
        self.check_requested = asyncio.Event()  # PathManager.check_soon
        self.dropped = 0
        self.closed_reason: str | None = None
        self._live = asyncio.Event()

    # ------------------------------------------------------------ state

    @property
    def live(self) -> bool:
        """True while a verified connection is in place."""
        pc = self.connection
        return pc is not None and not pc.closed.done() and self.closed_reason is None

    def install(
        self,
        pc: PeerConnection,
        *,
        kind: str,
        local: Address,
        remote: Address,
        reason: str,
    ) -> PeerConnection | None:
        """Put ``pc`` under the path; return the connection it replaces."""
        old = self.connection
        self.connection, self.kind = pc, kind
        # through a relay, each datagram must fit one fragment of the carrier
        pc.core.set_datagram_size(DATAGRAM_SIZE if kind == "direct" else RELAYED_DATAGRAM_SIZE)
        self.local, self.remote = local, remote
        self.family = "ipv6" if remote.family == 6 else "ipv4"
        self.changes.append(PathChange(time.time(), reason, kind, str(local), str(remote)))
        self._live.set()
        return old if old is not pc else None

    def lost(self) -> None:
        """The connection went away; calls wait until a new one is installed."""
        if not self.live:
            self._live.clear()

    @property
    def peer_user(self) -> str:
        """The peer's username (the same as :attr:`user`)."""
        return self.user

    async def close(self, reason: str = "closed") -> None:
        """Close the path for good (the manager stops keeping it up)."""
        self.shut(reason)

    def shut(self, reason: str) -> None:
        """Close the path for good, from synchronous code."""
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._live.set()  # wake waiters, who then see closed_reason
        if self.connection is not None:
            self.connection.close()

    async def wait_live(self, timeout: float | None = None) -> PeerConnection:
        """The current connection, waiting (up to ``timeout``) while there is none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.closed_reason is not None:
                raise PathClosedError(f"path to {self.user} closed ({self.closed_reason})")
            pc = self.connection
            if pc is not None and not pc.closed.done():
                return pc
            self._live.clear()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await asyncio.wait_for(self._live.wait(), left)
            except TimeoutError:
                raise ConnectionLost(f"no connection to {self.user}") from None

    # ------------------------------------------------------------ traffic

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        """A request to the peer; its reply (error replies raise RequestError)."""
        pc = await self.wait_live(timeout)
        return await pc.request(message, timeout=timeout)

    def notify(self, message: Message) -> None:
        """A notice to the peer (raises ConnectionLost while there is no connection)."""
        if not self.live or self.connection is None:
            raise ConnectionLost(f"no connection to {self.user}")
        self.connection.notify(message)

    def send_datagram(self, data: bytes) -> None:
        """One datagram on the unreliable channel (ConnectionLost without a connection)."""
        if not self.live or self.connection is None:
            raise ConnectionLost(f"no connection to {self.user}")
        self.connection.send_media(data)

    async def recv_datagram(self, timeout: float | None = None) -> bytes:
        """The next datagram from the peer."""
        return await asyncio.wait_for(self.datagrams.get(), timeout)

    async def receive(self, timeout: float | None = None) -> Message:
        """The next notice from the peer."""
        return await asyncio.wait_for(self.incoming.get(), timeout)

    # ------------------------------------------------------------ from the manager

    def deliver_datagram(self, data: bytes) -> None:
        """A datagram arrived on the current connection.

        It goes to :attr:`on_datagram` when that is set (a call's media
        stream, which needs the arrival time), else to the queue.
        """
        if self.on_datagram is not None:
            self.on_datagram(data)
            return
        try:
            self.datagrams.put_nowait(data)
        except asyncio.QueueFull:
            self.dropped += 1

    async def handle(self, message: Message) -> Message | None:
        """A request or notice from the peer: the reply (None for notices)."""
        if self.handler is not None:
            return await self.handler(message)
        return await self.default_handle(message)

    async def default_handle(self, message: Message) -> Message | None:
        """What a path does with a message no handler took: answers ``echo``,
        queues notices for :meth:`receive`, refuses other requests."""
        if isinstance(message, Echo):
            return EchoReply(data=message.data)
        if message.KIND.name == "NOTICE":
            try:
                self.incoming.put_nowait(message)
            except asyncio.QueueFull:
                self.dropped += 1
            return None
        return ErrorReply(code=ErrorCode.NOT_FOUND, reason=f"{message.NAME} not served here")

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: who, how, timings and the change history."""
        return {
            "user": self.user,
            "device": self.device_id.hex(),
            "initiator": self.initiator,
            "kind": self.kind,
            "family": self.family,
            "local": str(self.local) if self.local else None,
            "remote": str(self.remote) if self.remote else None,
            "first_packet_ms": self.first_packet_ms,
            "established_ms": self.established_ms,
            "live": self.live,
            "closed": self.closed_reason,
            "changes": [asdict(c) for c in self.changes],
        }
