"""What a supernode's overlay services share.

The directory and the white pages both know the other members' addresses
(refreshed from membership), ask a slot's owner one overlay hop away over a
certified supernode connection, and run replication in the background.
:class:`OverlayService` holds those parts once. Once the node starts a
graceful leave (``leaving``), its services keep their slots as they were
(so the handover in :mod:`hopline.supernode.handover` sends what they hold)
and refuse new replicas.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from hopline.connection import Expectation
from hopline.identity import InvalidUsername, Role, canonical_username
from hopline.runtime.endpoint import Endpoint, PeerConnection, ServiceError
from hopline.supernode.overlay import OverlayNode
from hopline.wire import Address, ErrorCode, Message

HOP_TIMEOUT = 2.0


class OverlayService:
    """Base of the supernode's overlay services."""

    def __init__(self, endpoint: Endpoint, overlay: OverlayNode) -> None:
        self.endpoint, self.overlay = endpoint, overlay
        self.node_id = overlay.node_id
        self.addresses: dict[str, Address] = {}
        self.leaving = False  # set once a graceful leave starts: ownership is frozen
        self._tasks: set[asyncio.Task[object]] = set()

    def _spawn(self, coroutine: Coroutine[Any, Any, object]) -> None:
        """Run ``coroutine`` in the background until it ends or close() is called."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancel background work in flight."""
        for task in self._tasks:
            task.cancel()

    async def connection(self, node: str) -> PeerConnection:
        """The certified connection to supernode ``node``, opened if needed.

        Raises KeyError for a node the overlay does not know, ConnectError if
        it cannot be reached.
        """
        address = self.addresses[node].as_tuple()
        pc = self.endpoint.connections.get(("udp", address))
        if pc is None or not pc.core.established:
            pc = await self.endpoint.connect(
                address, Expectation(role=Role.SUPERNODE, subject=node), timeout=HOP_TIMEOUT
            )
        return pc

    async def _ask(self, node: str, request: Message) -> Message:
        """One overlay hop: a request to supernode ``node`` (KeyError if unknown)."""
        pc = await self.connection(node)
        return await pc.request(request, timeout=HOP_TIMEOUT)

    def _refuse_if_leaving(self) -> None:
        """A leaving node takes no more replicas: it would only lose them."""
        if self.leaving:
            raise ServiceError(ErrorCode.UNAVAILABLE, "this supernode is leaving")


def peer_role(pc: PeerConnection) -> int | None:
    """The certified role of the peer, or None for an anonymous one."""
    peer = pc.peer
    return peer.certificate.body.role if peer is not None and peer.certificate else None


def require_own(pc: PeerConnection, claimed: str, what: str) -> str:
    """The canonical ``claimed`` name, if the peer is that logged-in user; else an error.

    A client may publish only its own presence record or profile: the name
    must be the one its certificate (proved in the handshake) carries.
    """
    peer = pc.peer
    if peer is None or peer.certificate is None or peer_role(pc) != Role.USER:
        raise ServiceError(ErrorCode.FORBIDDEN, f"only logged-in users publish {what}")
    try:
        user = canonical_username(claimed)
    except InvalidUsername as exc:
        raise ServiceError(ErrorCode.BAD_REQUEST, str(exc)) from None
    if user != peer.name:
        raise ServiceError(ErrorCode.FORBIDDEN, f"a user may publish only their own {what}")
    return user
