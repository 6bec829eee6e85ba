"""Overlay membership messages (command ids 0x0020-0x002F, supernode to supernode).

These carry the SWIM-style protocol of :mod:`hopline.overlay.membership`:

=======  ========================  =============================================
command  name                      purpose
=======  ========================  =============================================
0x0020   ``membership.ping``       direct probe (request) and its ack (reply)
0x0021   ``membership.ping-req``   indirect probe through a helper, and reply
0x0022   ``membership.join``       join through a seed; reply: state snapshot
0x0023   ``membership.sync``       push-pull anti-entropy: full state both ways
0x0024   ``membership.leave``      graceful leave notice
0x0025   ``membership.gossip``     piggyback-only notice (gossip fan-out)
=======  ========================  =============================================

Every message names its sender with the sender's own :class:`MemberUpdate`
(so a receiver learns about a new member from any message, and a member
marked dead sees that it must refute). Pings, acks and ping-reqs piggyback
gossip: a bounded list of recent :class:`MemberUpdate` s (the sender keeps
each message under the configured size, 1,000 bytes by default). Join
replies and syncs carry the whole table in parts (``part`` of ``parts``), each
part also under the size bound. The request id pairs a reply with its request
(the probe sequence number for pings and ping-reqs).
"""

from __future__ import annotations

from enum import IntEnum

from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Address, Kind, ParamType

UINT, STRING, ADDRESS, OBJECTS = (
    ParamType.UINT,
    ParamType.STRING,
    ParamType.ADDRESS,
    ParamType.OBJECTS,
)


class MemberState(IntEnum):
    """What one member is believed to be (SWIM states plus a graceful leave)."""

    ALIVE = 0
    SUSPECT = 1
    DEAD = 2
    LEFT = 3


class MemberUpdate(Record):
    """One member's state at one incarnation: the unit of gossip."""

    node_id: str = param(1, STRING, doc="supernode id, e.g. sn-1a2b...")
    address: Address = param(2, ADDRESS)
    incarnation: int = param(3, UINT, doc="raised only by the member itself, to refute")
    state: int = param(4, UINT, doc="0 alive, 1 suspect, 2 dead, 3 left")
    capacity: int | None = param(5, UINT, default=None, doc="hint: clients it can serve")
    load: int | None = param(6, UINT, default=None, doc="hint: clients it serves now")


class MembershipPing(Message, command=0x0020, kind=Kind.REQUEST, name="membership.ping"):
    """A direct probe of ``target``; request id is the probe sequence number."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate, doc="the sender, alive")
    target: str = param(2, STRING, doc="node id the sender means to probe")
    updates: tuple[MemberUpdate, ...] = param(3, OBJECTS, record=MemberUpdate, repeated=True)


class MembershipAck(Message, command=0x0020, kind=Kind.REPLY, name="membership.ping"):
    """The answer to :class:`MembershipPing`, with piggybacked gossip."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    updates: tuple[MemberUpdate, ...] = param(2, OBJECTS, record=MemberUpdate, repeated=True)


class MembershipPingReq(Message, command=0x0021, kind=Kind.REQUEST, name="membership.ping-req"):
    """Ask a helper to probe ``target`` for us (SWIM's indirect probe)."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    target: str = param(2, STRING)
    target_address: Address = param(3, ADDRESS)
    updates: tuple[MemberUpdate, ...] = param(4, OBJECTS, record=MemberUpdate, repeated=True)


class MembershipPingReqReply(Message, command=0x0021, kind=Kind.REPLY, name="membership.ping-req"):
    """Sent by the helper when ``target`` acked its probe."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    target: str = param(2, STRING)
    updates: tuple[MemberUpdate, ...] = param(3, OBJECTS, record=MemberUpdate, repeated=True)


class MembershipJoin(Message, command=0x0022, kind=Kind.REQUEST, name="membership.join"):
    """A new (or restarted) supernode asks a seed to let it in."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)


class MembershipJoinReply(Message, command=0x0022, kind=Kind.REPLY, name="membership.join"):
    """One part of the seed's membership snapshot."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    members: tuple[MemberUpdate, ...] = param(2, OBJECTS, record=MemberUpdate, repeated=True)
    part: int = param(3, UINT, default=0)
    parts: int = param(4, UINT, default=1)


class MembershipSync(Message, command=0x0023, kind=Kind.REQUEST, name="membership.sync"):
    """Anti-entropy push: one part of the sender's whole table."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    members: tuple[MemberUpdate, ...] = param(2, OBJECTS, record=MemberUpdate, repeated=True)
    part: int = param(3, UINT, default=0)
    parts: int = param(4, UINT, default=1)


class MembershipSyncReply(Message, command=0x0023, kind=Kind.REPLY, name="membership.sync"):
    """Anti-entropy pull: one part of the receiver's table, sent back."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    members: tuple[MemberUpdate, ...] = param(2, OBJECTS, record=MemberUpdate, repeated=True)
    part: int = param(3, UINT, default=0)
    parts: int = param(4, UINT, default=1)


class MembershipLeave(Message, command=0x0024, kind=Kind.NOTICE, name="membership.leave"):
    """A supernode leaves gracefully; ``source`` has state LEFT."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)


class MembershipGossip(Message, command=0x0025, kind=Kind.NOTICE, name="membership.gossip"):
    """Fresh updates pushed to a few random members between probes."""

    source: MemberUpdate = param(1, OBJECTS, record=MemberUpdate)
    updates: tuple[MemberUpdate, ...] = param(2, OBJECTS, record=MemberUpdate, repeated=True)


MEMBERSHIP_MESSAGES: tuple[type[Message], ...] = (
    MembershipPing,
    MembershipAck,
    MembershipPingReq,
    MembershipPingReqReply,
    MembershipJoin,
    MembershipJoinReply,
    MembershipSync,
    MembershipSyncReply,
    MembershipLeave,
    MembershipGossip,
)

__all__ = [
    "MEMBERSHIP_MESSAGES",
    "MemberState",
    "MemberUpdate",
    "MembershipAck",
    "MembershipGossip",
    "MembershipJoin",
    "MembershipJoinReply",
    "MembershipLeave",
    "MembershipPing",
    "MembershipPingReq",
    "MembershipPingReqReply",
    "MembershipSync",
    "MembershipSyncReply",
]
