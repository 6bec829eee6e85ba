"""Path establishment signalling between two users (command ids 0x0051-0x0057).

==========  ===============  ===================================================
id          name             purpose
==========  ===============  ===================================================
0x0051      path.offer       caller to callee: start checks on these candidates
0x0052      path.answer      callee to caller: my candidates, checks started
0x0053      path.candidates  either side: candidates found later (a relay)
0x0054      path.cancel      either side: this attempt is over (with a reason)
==========  ===============  ===================================================

These are notices. They never travel on their own: each is the payload of
a ``forward`` envelope (0x0003) that the recipient's home supernode
delivers, stamping the certified sender. The supernodes route them without
acting on them; the connectivity checks they set up are authenticated with
a key only the two users can derive (docs/protocol.md, "Path
establishment"), so a supernode that rewrites candidates can at worst make
a path fail, never impersonate a peer.

A candidate is an ``Endpoint`` record (:mod:`hopline.wire.commands`):
``transport`` 0 is UDP, 1 is a relayed candidate whose owner reaches its
relay over TCP; ``kind`` 0 host, 1 server-reflexive, 2 relayed,
3 peer-reflexive (learnt from checks, never signalled), 4 predicted (a
guessed NAT port), 5 the sender's home supernode (``reply_via``; presence
records list it too). Each side sends its login-server certificate: the
static key it binds keys the checks and is what the final handshake must
prove. ``0x0055-0x0057`` are reserved for later path messages.
"""

from __future__ import annotations

from hopline.wire.commands import Endpoint
from hopline.wire.schema import Message, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING, OBJECTS = ParamType.UINT, ParamType.BYTES, ParamType.STRING, ParamType.OBJECTS

PATH_ID_SIZE = 16
MAX_CANDIDATES = 32  # per message; more are dropped by the receiver


class PathOffer(Message, command=0x0051, kind=Kind.NOTICE, name="path.offer"):
    """The caller's candidates for a new path (inside a ``forward`` envelope)."""

    path_id: bytes = param(1, BYTES, doc="16 random bytes naming the attempt")
    ufrag: str = param(2, STRING, doc="the caller's check user fragment")
    candidates: tuple[Endpoint, ...] = param(3, OBJECTS, record=Endpoint, repeated=True)
    nat_class: int = param(4, UINT, default=0, doc="the caller's NAT type (0 unknown)")
    reply_via: Endpoint | None = param(
        5, OBJECTS, record=Endpoint, default=None, doc="the caller's home supernode"
    )
    tie_breaker: int = param(6, UINT, default=0)
    to_device: bytes | None = param(7, BYTES, default=None, doc="the callee device")
    certificate: bytes = param(8, BYTES, default=b"", doc="the caller's, for its static key")


class PathAnswer(Message, command=0x0052, kind=Kind.NOTICE, name="path.answer"):
    """The callee's candidates; checks have started on its side."""

    path_id: bytes = param(1, BYTES)
    ufrag: str = param(2, STRING, doc="the callee's check user fragment")
    candidates: tuple[Endpoint, ...] = param(3, OBJECTS, record=Endpoint, repeated=True)
    nat_class: int = param(4, UINT, default=0)
    reply_via: Endpoint | None = param(5, OBJECTS, record=Endpoint, default=None)
    certificate: bytes = param(6, BYTES, default=b"", doc="the callee's, for its static key")


class PathCandidates(Message, command=0x0053, kind=Kind.NOTICE, name="path.candidates"):
    """More candidates for a running attempt (trickled: a relay allocated later)."""

    path_id: bytes = param(1, BYTES)
    candidates: tuple[Endpoint, ...] = param(2, OBJECTS, record=Endpoint, repeated=True)


class PathCancel(Message, command=0x0054, kind=Kind.NOTICE, name="path.cancel"):
    """The sender gives up on an attempt (busy, timeout, refused)."""

    path_id: bytes = param(1, BYTES)
    reason: str = param(2, STRING, default="")


PATH_MESSAGES = (PathOffer, PathAnswer, PathCandidates, PathCancel)
PathMessage = PathOffer | PathAnswer | PathCandidates | PathCancel

__all__ = [
    "MAX_CANDIDATES",
    "PATH_ID_SIZE",
    "PATH_MESSAGES",
    "PathAnswer",
    "PathCancel",
    "PathCandidates",
    "PathMessage",
    "PathOffer",
]
