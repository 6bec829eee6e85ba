"""NAT discovery between supernodes (command id 0x0050).

==========  ===============  ===================================================
id          name             purpose
==========  ===============  ===================================================
0x0050      nat.reflect      SN to SN: answer this STUN Binding request from
                             your own address (a CHANGE-REQUEST change-IP)
==========  ===============  ===================================================

A client testing its NAT's filtering asks its supernode for a Binding
response from *another* IP address (RFC 5780 CHANGE-REQUEST). A supernode
has one address, so it passes the request to a partner supernode as a
``nat.reflect`` notice on the *unreliable* channel of their certified
connection (a lost notice is a lost STUN response: the client retransmits).
The notice carries no STUN bytes, only what the partner needs to build the
response itself: the client's address as the first supernode saw it and the
transaction id. The partner sends a Binding success response from its own
STUN port to that address and nowhere else, rate-limited per target IP
(:mod:`hopline.nat.service`). Only certified supernodes may send it.
"""

from __future__ import annotations

from hopline.wire.schema import Message, param
from hopline.wire.types import Address, Kind, ParamType

BYTES, ADDRESS = ParamType.BYTES, ParamType.ADDRESS

NAT_REFLECT = 0x0050


class NatReflect(Message, command=NAT_REFLECT, kind=Kind.NOTICE, name="nat.reflect"):
    """Send a Binding success response for ``transaction_id`` to ``target``."""

    target: Address = param(1, ADDRESS, doc="the client, as the asking supernode saw it")
    transaction_id: bytes = param(2, BYTES, doc="the STUN transaction id (12 bytes; 16: RFC 3489)")
    origin: Address | None = param(3, ADDRESS, default=None, doc="the asking supernode")
