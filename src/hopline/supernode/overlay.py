"""Membership over real connections: the asyncio shell around ``Membership``.

SWIM is made for lossy datagrams, so membership messages travel on the
*unreliable* channel of the secure connections between supernodes (a late
retransmission would only confuse failure detection). Only certified
supernodes take part, and a message's ``source`` must name the very
supernode whose certificate the connection proved, so nobody can speak for
another member. Connections are opened on demand to whichever address the
core wants to reach; messages wait in a small bounded queue while a
connection is being set up, and are dropped (as SWIM expects of a lossy
network) if it cannot be. A leaving node also sends its leave notice on the
reliable channel to the nodes it hands records to
(:mod:`hopline.supernode.handover`), so that notice arrives before them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable

from hopline.connection import Expectation
from hopline.identity import Role
from hopline.overlay.membership import Member, Membership, MembershipConfig
from hopline.runtime.endpoint import ConnectError, ConnectionLost, Endpoint, PeerConnection
from hopline.runtime.timer import CoreTimer
from hopline.wire import Address, Message, WireError, decode, encode
from hopline.wire.membership import (
    MEMBERSHIP_MESSAGES,
    MembershipLeave,
    MemberState,
    MemberUpdate,
)

log = logging.getLogger("hopline.overlay")
QUEUE_PER_PEER = 64
CONNECT_TIMEOUT = 3.0


class OverlayNode:
    """One supernode's membership, run over its endpoint."""

    def __init__(
        self,
        endpoint: Endpoint,
        node_id: str,
        address: Address,
        config: MembershipConfig | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.node_id = node_id
        self.core = Membership(
            node_id, address, config=config, rng=random.Random(), now=time.time()
        )
        self.dropped: Counter[str] = Counter()
        self._waiting: dict[Address, deque[Message]] = {}
        self._timer = CoreTimer(self._on_timer)
        self._tasks: set[asyncio.Task[None]] = set()
        self.on_change: Callable[[], None] | None = None  # called after membership changes
        endpoint.datagram_handler = self.on_datagram

    def members(self) -> list[Member]:
        """Members seen alive or suspected, this node included."""
        return self.core.members(include_self=True)

    def join(self, seeds: list[Address]) -> None:
        """Join through ``seeds`` (none: start a new overlay)."""
        self.core.join(seeds, time.time())
        self._service()

    def leave(self) -> MembershipLeave:
        """Tell the others we are leaving; return the notice, to repeat on reliable channels."""
        self.core.leave(time.time())
        self._service()
        return self.leave_notice()

    def leave_notice(self) -> MembershipLeave:
        """This node's leave notice (state LEFT, at its current incarnation)."""
        me = self.core.member(self.node_id)
        assert me is not None  # a node always knows itself
        return leave_notice_of(me)

    def close(self) -> None:
        """Stop timers and connection attempts."""
        self._timer.cancel()
        for task in self._tasks:
            task.cancel()

    # ------------------------------------------------------------ input

    def on_datagram(self, pc: PeerConnection, data: bytes) -> None:
        """A datagram from a peer: a membership message if it is one."""
        if not _is_supernode(pc):
            self.dropped["not-a-supernode"] += 1
            return
        try:
            message = decode(data)
        except WireError as exc:
            self.dropped[f"wire:{exc.reason}"] += 1
            return
        self.on_message(pc, message)

    def on_notice(self, pc: PeerConnection, message: MembershipLeave) -> None:
        """A leave notice that came on the reliable channel, ahead of a handover."""
        self.on_message(pc, message)

    def on_message(self, pc: PeerConnection, message: Message) -> None:
        """A decoded membership message from a certified supernode speaking for itself."""
        peer = pc.peer
        if peer is None or not _is_supernode(pc):
            self.dropped["not-a-supernode"] += 1
            return
        source = getattr(message, "source", None)
        if type(message) not in MEMBERSHIP_MESSAGES or source is None:
            self.dropped["not-membership"] += 1
            return
        if source.node_id != peer.name:
            self.dropped["impersonation"] += 1  # speaks for a member it is not
            return
        self.core.receive(Address.of(*pc.address), message, time.time())
        self._service()

    # ------------------------------------------------------------ output

    def _service(self) -> None:
        now = time.time()
        for address, message in self.core.messages_to_send(now):
            self._send(address, message)
        changed = False
        while (event := self.core.next_event()) is not None:
            log.info(
                "membership: %s",
                event,
                extra={"event": type(event).__name__, "peer": event.member.node_id},
            )
            changed = True
        if changed and self.on_change is not None:
            self.on_change()
        self._arm()

    def _arm(self) -> None:
        self._timer.arm(self.core.get_timer())

    def _on_timer(self) -> None:
        self.core.handle_timer(time.time())
        self._service()

    def _send(self, address: Address, message: Message) -> None:
        pc = self.endpoint.connections.get(("udp", address.as_tuple()))
        if pc is not None and pc.core.established:
            self._transmit(pc, message)
            return
        queue = self._waiting.get(address)
        if queue is None:
            queue = self._waiting[address] = deque(maxlen=QUEUE_PER_PEER)
            task = asyncio.get_running_loop().create_task(self._connect(address))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        queue.append(message)

    async def _connect(self, address: Address) -> None:
        try:
            pc = await self.endpoint.connect(
                address.as_tuple(), Expectation(role=Role.SUPERNODE), timeout=CONNECT_TIMEOUT
            )
        except ConnectError as exc:
            self.dropped[f"connect:{exc.reason}"] += 1
            self._waiting.pop(address, None)
            return
        for message in self._waiting.pop(address, ()):
            self._transmit(pc, message)

    def _transmit(self, pc: PeerConnection, message: Message) -> None:
        try:
            pc.send_media(encode(message))
        except ConnectionLost:
            self.dropped["connection-lost"] += 1  # SWIM treats it as a lost datagram


def _is_supernode(pc: PeerConnection) -> bool:
    peer = pc.peer
    return (
        peer is not None
        and peer.certificate is not None
        and peer.certificate.role == Role.SUPERNODE
    )


def leave_notice_of(me: Member) -> MembershipLeave:
    """The leave notice of member ``me``: state LEFT at its current incarnation."""
    update = MemberUpdate(
        node_id=me.node_id,
        address=me.address,
        incarnation=me.incarnation,
        state=MemberState.LEFT,
        capacity=me.capacity,
        load=me.load,
    )
    return MembershipLeave(source=update)
