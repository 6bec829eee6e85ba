"""Supernode samples for the client's host cache (command id 0x0026).

==========  ===================  ===============================================
id          name                 purpose
==========  ===================  ===============================================
0x0026      membership.sample    a client asks its home for live supernodes
==========  ===================  ===============================================

The classic client learnt new supernodes from the network, not only from
the login server. A client sends :class:`SupernodeSample` to its home
supernode, which answers from its membership view with at most
:data:`MAX_SAMPLE` supernodes (``limit`` asks for fewer): itself first, then
a random sample of the members it sees alive, then suspects if room is
left. Each :class:`SupernodeHost` is a member's node id and the address it
advertises (``--public-address``, the one it enrolled and joined with).
The client merges the addresses into its host cache as overlay-learnt
entries (:mod:`hopline.client.overlay_hosts`).

The command sits in the membership range (0x0020-0x002F) because it reads
the membership view, but unlike the SWIM messages it travels on the
reliable channel as an ordinary request, and any certified peer may send it.
"""

from __future__ import annotations

from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Address, Kind, ParamType

UINT, STRING, ADDRESS, OBJECTS = (
    ParamType.UINT,
    ParamType.STRING,
    ParamType.ADDRESS,
    ParamType.OBJECTS,
)
MAX_SAMPLE = 32


def usable_address(address: Address) -> bool:
    """Whether anyone could dial ``address`` (not unspecified, multicast or port 0)."""
    host = address.host
    return address.port != 0 and not (host.is_unspecified or host.is_multicast)


class SupernodeHost(Record):
    """One supernode as the overlay knows it."""

    node_id: str = param(1, STRING, doc="supernode id, e.g. sn-1a2b...")
    address: Address = param(2, ADDRESS, doc="the address it advertises")


class SupernodeSample(Message, command=0x0026, kind=Kind.REQUEST, name="membership.sample"):
    """Ask the home supernode for live supernodes (for the host cache)."""

    limit: int = param(1, UINT, default=MAX_SAMPLE, doc="at most 32")


class SupernodeSampleReply(Message, command=0x0026, kind=Kind.REPLY, name="membership.sample"):
    """A random sample of the members, alive ones first, the answering node first of all."""

    hosts: tuple[SupernodeHost, ...] = param(1, OBJECTS, record=SupernodeHost, repeated=True)


__all__ = [
    "MAX_SAMPLE",
    "SupernodeHost",
    "SupernodeSample",
    "SupernodeSampleReply",
    "usable_address",
]
