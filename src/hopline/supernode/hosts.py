"""Supernode samples for clients' host caches (``membership.sample``).

A client asks its home supernode for live supernodes
(:class:`~hopline.wire.hosts.SupernodeSample`) so that its host cache keeps
up with the overlay rather than only with the login server's bootstrap
list. :func:`sample_hosts` is the choice, pure and seeded by the caller:

* the answering node first: the client learns the address this node
  advertises, which may differ from the one it dialled;
* then a uniform random sample of the members seen *alive*;
* then, if room is left, of the *suspect* ones (they may be fine; the
  client's cache backs off from those that are not);
* members whose advertised address is unusable (unspecified, multicast or
  port 0: a node listening on ``0.0.0.0`` without ``--public-address``) are
  left out;
* at most :data:`~hopline.wire.hosts.MAX_SAMPLE` (32) entries, fewer if the
  request's ``limit`` says so.

Random sampling spreads clients over the whole overlay instead of having
every client of one home learn the same few supernodes. Any certified peer
may ask; anonymous peers are refused.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from hopline.identity import Role
from hopline.overlay.membership import Member, MemberState
from hopline.runtime.endpoint import PeerConnection, ServiceError
from hopline.supernode.overlay import OverlayNode
from hopline.supernode.service import peer_role
from hopline.wire import ErrorCode, Message
from hopline.wire.hosts import (
    MAX_SAMPLE,
    SupernodeHost,
    SupernodeSample,
    SupernodeSampleReply,
    usable_address,
)

__all__ = ["HostsService", "sample_hosts"]


def sample_hosts(
    members: Sequence[Member], me: str, limit: int, rng: random.Random
) -> list[SupernodeHost]:
    """Up to ``limit`` (at most 32) members: ``me``, then random alive ones, then suspects."""
    limit = max(0, min(limit, MAX_SAMPLE))
    usable = [m for m in members if usable_address(m.address)]
    own = [m for m in usable if m.node_id == me]
    others = [m for m in usable if m.node_id != me]
    alive = [m for m in others if m.state == MemberState.ALIVE]
    suspect = [m for m in others if m.state == MemberState.SUSPECT]
    chosen = own[:limit]
    for group in (alive, suspect):
        room = limit - len(chosen)
        if room <= 0:
            break
        chosen += rng.sample(group, min(room, len(group)))
    return [SupernodeHost(node_id=m.node_id, address=m.address) for m in chosen]


class HostsService:
    """Answers ``membership.sample`` from the overlay's current view."""

    def __init__(self, overlay: OverlayNode, rng: random.Random | None = None) -> None:
        self.overlay = overlay
        self.rng = rng or random.Random()
        self.answered = 0

    async def handle(self, pc: PeerConnection, message: Message) -> Message | None:
        """Answer a sample request (None: not one)."""
        if not isinstance(message, SupernodeSample):
            return None
        if peer_role(pc) not in (Role.USER, Role.SUPERNODE):
            raise ServiceError(ErrorCode.FORBIDDEN, "only certified peers ask for supernodes")
        hosts = sample_hosts(self.overlay.members(), self.overlay.node_id, message.limit, self.rng)
        self.answered += 1
        return SupernodeSampleReply(hosts=tuple(hosts))
