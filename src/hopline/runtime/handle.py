"""``LinkHandle``: one sans-I/O :class:`~hopline.transport.link.Link` driven by asyncio.

The handle is the only place where a link meets real time. After every
input (a datagram, an application send, a timer) it runs one *service* pass,
scheduled with ``loop.call_soon`` so that a burst of inputs in one loop
iteration is answered by one pass (ACKs and small messages coalesce):

1. drain link events -- messages go to an ``asyncio.Queue``, a
   ``PeerUnreachable``/``PeerClosed`` closes the handle;
2. hand ``link.datagrams_to_send(now)`` to the ``transmit`` callable supplied
   by the UDP or TCP shell;
3. re-arm the one asyncio timer of this link from ``link.get_timer()``;
4. wake tasks waiting for send-queue room (:meth:`LinkHandle.send`) or for
   everything to be acknowledged (:meth:`LinkHandle.flush`).

``now`` is ``loop.time()``, the loop's monotonic clock, which is also what
``loop.call_at`` uses for the timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hopline.transport.errors import LinkClosedError
from hopline.transport.link import Link, LinkStats, MessageReceived, PeerClosed, PeerUnreachable

__all__ = ["DEFAULT_HIGH_WATER", "LinkHandle"]

DEFAULT_HIGH_WATER = 1024
"""``send`` waits while this many reliable messages are queued behind the window."""

Transmit = Callable[[bytes], None]


class LinkHandle:
    """Application-side handle of one link: send, receive, flush, close."""

    def __init__(
        self,
        link: Link,
        remote_address: tuple[Any, ...],
        transmit: Transmit,
        *,
        on_closed: Callable[[LinkHandle], None] | None = None,
        high_water: int = DEFAULT_HIGH_WATER,
    ) -> None:
        """Wrap ``link``; ``transmit`` puts one datagram on the wire towards the peer."""
        self.link = link
        self.remote_address = remote_address
        self.high_water = high_water
        self._transmit = transmit
        self._on_closed = on_closed
        self._loop = asyncio.get_running_loop()
        self._messages: asyncio.Queue[MessageReceived | None] = asyncio.Queue()
        self._writable = asyncio.Event()
        self._drained = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._service_scheduled = False
        self._close_reason: str | None = None

    # -- state -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """The handle is finished; receive() raises once queued messages are read."""
        return self._close_reason is not None

    @property
    def close_reason(self) -> str | None:
        """Why the handle closed (link close reason or a transport-level reason)."""
        return self._close_reason

    @property
    def stats(self) -> LinkStats:
        """The link's statistics snapshot."""
        return self.link.stats

    # -- application API -------------------------------------------------------

    def send_nowait(self, data: bytes, *, reliable: bool = True) -> None:
        """Queue a message without waiting (raises LocalTransportError on misuse)."""
        self._check_open()
        self.link.send(data, self._loop.time(), reliable=reliable)
        self._schedule_service()

    async def send(self, data: bytes, *, reliable: bool = True) -> None:
        """Queue a message, first waiting while ``high_water`` reliable messages are queued."""
        while reliable and self.link.send_queue_depth >= self.high_water:
            self._check_open()
            self._writable.clear()
            await self._writable.wait()
        self.send_nowait(data, reliable=reliable)

    async def receive(self) -> MessageReceived:
        """The next message from the peer; raises LinkClosedError once the link is closed."""
        message = await self._messages.get()
        if message is None:
            self._messages.put_nowait(None)  # wake any other receiver too
            raise LinkClosedError(f"link closed ({self._close_reason})")
        return message

    def __aiter__(self) -> LinkHandle:
        """Iterate over received messages until the link closes."""
        return self

    async def __anext__(self) -> MessageReceived:
        """Next message, or StopAsyncIteration when the link is closed."""
        try:
            return await self.receive()
        except LinkClosedError:
            raise StopAsyncIteration from None

    async def flush(self) -> None:
        """Wait until every reliable message sent so far has been acknowledged."""
        while self.link.send_queue_depth or self.link.in_flight:
            self._check_open()
            self._drained.clear()
            await self._drained.wait()
        self._check_open()

    def ping(self) -> None:
        """Send a PING now (an RTT sample when the PONG returns)."""
        self.link.ping(self._loop.time())
        self._schedule_service()

    def close(self, code: int = 0) -> None:
        """Send a CLOSE frame (best effort) and release the handle."""
        if self.closed:
            return
        self.link.close(self._loop.time(), code)
        self._flush_datagrams()
        self._finish("local")

    # -- shell API ---------------------------------------------------------------

    def datagram_received(self, data: bytes) -> None:
        """Called by the shell for each datagram from the peer."""
        if self.closed:
            return
        self.link.receive_datagram(data, self._loop.time())
        self._schedule_service()

    def transport_lost(self, reason: str) -> None:
        """Called by the shell when the underlying transport is gone."""
        self._finish(reason)

    # -- internals ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise LinkClosedError(f"link closed ({self._close_reason})")

    def _schedule_service(self) -> None:
        if not self._service_scheduled and not self.closed:
            self._service_scheduled = True
            self._loop.call_soon(self._service)

    def _service(self) -> None:
        self._service_scheduled = False
        if self.closed:
            return
        self._drain_events()
        if self.closed:
            return
        self._flush_datagrams()
        self._arm_timer()
        self._wake_writers()

    def _drain_events(self) -> None:
        while (event := self.link.next_event()) is not None:
            if isinstance(event, MessageReceived):
                self._messages.put_nowait(event)
            elif isinstance(event, PeerUnreachable):
                self._finish(event.reason)
            elif isinstance(event, PeerClosed):
                self._finish("peer_closed")

    def _flush_datagrams(self) -> None:
        for datagram in self.link.datagrams_to_send(self._loop.time()):
            self._transmit(datagram)

    def _arm_timer(self) -> None:
        deadline = self.link.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._timer_at
        self._timer = self._timer_at = None
        if self.closed:
            return
        # loop timers may fire a hair early (uvloop rounds to milliseconds)
        now = self._loop.time() if deadline is None else max(self._loop.time(), deadline)
        self.link.handle_timer(now)
        self._service()

    def _wake_writers(self) -> None:
        if self.link.send_queue_depth < self.high_water:
            self._writable.set()
        if not self.link.send_queue_depth and not self.link.in_flight:
            self._drained.set()

    def _finish(self, reason: str) -> None:
        if self._close_reason is not None:
            return
        self._close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._messages.put_nowait(None)
        self._writable.set()
        self._drained.set()
        if self._on_closed is not None:
            self._on_closed(self)
