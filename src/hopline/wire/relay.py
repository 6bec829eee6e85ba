"""Relay allocations on supernodes, TURN-like (command ids 0x0058-0x005E).

==========  ===============  ===================================================
id          name             purpose
==========  ===============  ===================================================
0x0058      relay.allocate   a user asks its supernode for a relayed UDP port
0x0059      relay.refresh    extend an allocation's lifetime; lifetime 0 deletes
0x005A      relay.permit     let datagrams from these peer IP addresses through
0x005B      relay.channel    bind a channel number to one peer (short frames)
0x005C      relay.send       owner to SN, unreliable channel: send to a peer
0x005D      relay.data       SN to owner, unreliable channel: a peer sent this
0x005E      relay.released   SN to owner: an allocation is gone (expired, ...)
==========  ===============  ===================================================

The commands sit in the connectivity range (0x0050-0x005F), in its upper
half. Only certified users may use them, each on its own allocations
(:mod:`hopline.relay.allocation` has the rules; docs/protocol.md, "Relay",
the exchange). The four requests travel on the reliable channel;
``relay.send`` and ``relay.data`` are notices on the *unreliable* channel,
as are channel-data frames (:mod:`hopline.relay.framing`), which carry the
same datagrams with a two-byte header once a channel is bound.
"""

from __future__ import annotations

from hopline.wire.schema import Message, param
from hopline.wire.types import Address, Kind, ParamType

UINT, BYTES, STRING, ADDRESS = ParamType.UINT, ParamType.BYTES, ParamType.STRING, ParamType.ADDRESS


class RelayAllocate(Message, command=0x0058, kind=Kind.REQUEST, name="relay.allocate"):
    """Ask for an allocation: a relayed UDP port on this supernode."""

    lifetime: int | None = param(1, UINT, default=None, doc="seconds; absent: 600")


class RelayAllocateReply(Message, command=0x0058, kind=Kind.REPLY, name="relay.allocate"):
    """The allocation: its id, relayed transport address and granted lifetime."""

    relay_id: int = param(1, UINT)
    relayed: Address = param(2, ADDRESS, doc="peers send here")
    lifetime: int = param(3, UINT, doc="seconds granted")
    observed: Address | None = param(4, ADDRESS, default=None, doc="the owner, as seen")


class RelayRefresh(Message, command=0x0059, kind=Kind.REQUEST, name="relay.refresh"):
    """Extend an allocation from now; lifetime 0 deletes it."""

    relay_id: int = param(1, UINT)
    lifetime: int | None = param(2, UINT, default=None, doc="seconds; absent: 600; 0: delete")


class RelayRefreshReply(Message, command=0x0059, kind=Kind.REPLY, name="relay.refresh"):
    """The lifetime granted (0 once deleted)."""

    lifetime: int = param(1, UINT)


class RelayPermit(Message, command=0x005A, kind=Kind.REQUEST, name="relay.permit"):
    """Install or refresh permissions for the peers' IP addresses (ports are ignored)."""

    relay_id: int = param(1, UINT)
    peers: tuple[Address, ...] = param(2, ADDRESS, repeated=True, doc="at least one")


class RelayPermitReply(Message, command=0x005A, kind=Kind.REPLY, name="relay.permit"):
    """The permissions' lifetime (300 s unless installed again)."""

    lifetime: int = param(1, UINT)


class RelayChannel(Message, command=0x005B, kind=Kind.REQUEST, name="relay.channel"):
    """Bind ``channel`` (0x4000-0x7FFF) to ``peer``; also permits the peer's IP."""

    relay_id: int = param(1, UINT)
    channel: int = param(2, UINT, doc="0x4000-0x7FFF, unique per owner")
    peer: Address = param(3, ADDRESS)


class RelayChannelReply(Message, command=0x005B, kind=Kind.REPLY, name="relay.channel"):
    """The binding's lifetime (600 s unless bound again)."""

    lifetime: int = param(1, UINT)


class RelaySend(Message, command=0x005C, kind=Kind.NOTICE, name="relay.send"):
    """Owner to supernode (unreliable channel): send ``data`` to ``peer`` from the relayed port."""

    relay_id: int = param(1, UINT)
    peer: Address = param(2, ADDRESS)
    data: bytes = param(3, BYTES)


class RelayData(Message, command=0x005D, kind=Kind.NOTICE, name="relay.data"):
    """Supernode to owner (unreliable channel): ``peer`` sent ``data`` to the relayed port."""

    relay_id: int = param(1, UINT)
    peer: Address = param(2, ADDRESS)
    data: bytes = param(3, BYTES)


class RelayReleased(Message, command=0x005E, kind=Kind.NOTICE, name="relay.released"):
    """Supernode to owner (reliable channel): the allocation and its port are gone."""

    relay_id: int = param(1, UINT)
    reason: str = param(2, STRING, doc="expired, deleted")


RELAY_REQUESTS = (RelayAllocate, RelayRefresh, RelayPermit, RelayChannel)
RELAY_COMMANDS = frozenset(range(0x0058, 0x005F))

__all__ = [
    "RELAY_COMMANDS",
    "RELAY_REQUESTS",
    "RelayAllocate",
    "RelayAllocateReply",
    "RelayChannel",
    "RelayChannelReply",
    "RelayData",
    "RelayPermit",
    "RelayPermitReply",
    "RelayRefresh",
    "RelayRefreshReply",
    "RelayReleased",
    "RelaySend",
]
