"""Conference signalling (command ids 0x0067-0x006F).

==========  ==============  ====================================================
id          name            purpose
==========  ==============  ====================================================
0x0067      conf.invite     host to an invitee: join this conference
0x0068      conf.accept     invitee to host: joining, with my capacity report
0x0069      conf.decline    invitee to host: not joining (rejected or busy)
0x006A      conf.roster     host to every member: the roster at an epoch
0x006B      conf.leave      a member to every other member: I am leaving
0x006C      conf.capacity   a member to the host: my capacity, measured again
0x006D      conf.handover   new or old host to every member: the mix moves
0x006E      conf.end        host to one member or invitee: you are out
0x006F      conf.speakers   host to every member: who is mixed as speaking now
==========  ==============  ====================================================

Like call signalling (:mod:`hopline.wire.call`) these are notices on the
reliable channel of the secure peer connection between two participants:
end-to-end encrypted, and authenticated by the certificates proved in the
handshake, so no message names its sender (the receiver knows it). A
conference is a star around its host, which mixes (:mod:`hopline.media.mixer`);
members signal the host, and the host tells everyone the *roster*.

The roster is versioned. Every roster the host publishes carries an
``epoch`` one higher than the last; a handover carries the old epoch plus one.
A participant keeps the greatest ``(epoch, host)`` pair it has seen and
ignores (and counts) any roster or handover that is not greater, so stale
rosters and handovers that crossed on the way change nothing, and two
participants that both claimed the mix converge on the same one.

Each roster row (:class:`ConfMember`) carries that member's last capacity
report, so every participant holds the same reports at the same epoch and
computes the same successor if the host disappears
(:mod:`hopline.calls.election`).

Only the host hears everyone, so only its mixer knows who speaks. It tells
the members with ``conf.speakers``: the names it mixes as speaking now (at
most :data:`MAX_SPEAKERS`; a mixer mixes three by default), stamped with
the roster epoch it holds, so a member can refuse a set from a host it no
longer follows. To keep a 64-member roster inside the
decoder's object budget, a row's path figures are two integer lists aligned
with the roster's ``members`` order (``UNMEASURED`` where no path was
measured, and for the member itself); a capacity report names its peers.

:func:`check_message` enforces what the object list cannot express (sizes,
bounds, canonical user names, aligned lists) and raises only
:class:`~hopline.wire.errors.DecodeError` subclasses: the receiver drops and
counts what fails.
"""

from __future__ import annotations

import re
from enum import IntEnum

from hopline.wire.errors import BadValue, LimitExceeded
from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Kind, ParamType

UINT, BYTES, STRING = ParamType.UINT, ParamType.BYTES, ParamType.STRING
UINTS, OBJECTS = ParamType.UINTS, ParamType.OBJECTS

CONF_ID_SIZE = 16
MAX_MEMBERS = 64
"""Members and pending invitees of one conference, together."""
UNMEASURED = 0xFFFF
"""An RTT (ms) that means: no path measured."""
MAX_RTT_MS = UNMEASURED
MAX_LOSS_PERMILLE = 1000
MAX_NAT_CLASS = 6  # hopline.nat.discovery.NatType.UDP_BLOCKED
MAX_REASON = 200  # characters of a reason; longer ones are refused
MAX_SPEAKERS = 8
"""Names in one ``conf.speakers``: a mixer mixes at most this many at once (3 by default)."""
_USERNAME = re.compile(r"[a-z0-9._-]{3,32}")
"""The canonical username form of :mod:`hopline.identity.names` (which imports the wire)."""


class HandoverCause(IntEnum):
    """Why the mix moved (``conf.handover`` parameter ``cause``)."""

    LEFT = 1
    """The old host left and named its successor."""
    LOST = 2
    """The old host fell silent; the successor claimed the mix."""
    REBALANCE = 3
    """The old host stays, a much more capable member mixes from now on."""


class ConfCapacity(Record):
    """A participant's measured capacity (:class:`hopline.calls.election.Capacity`)."""

    nat_class: int = param(1, UINT, default=0, doc="NAT class, 0 unknown .. 6 UDP blocked")
    upload_bps: int = param(2, UINT, default=0, doc="upload estimate, bit/s")
    encodes_per_s: int = param(3, UINT, default=0, doc="20 ms Opus encodes per second")
    decodes_per_s: int = param(4, UINT, default=0, doc="20 ms Opus decodes per second")
    peers: tuple[str, ...] = param(5, STRING, repeated=True, doc="users with a measured path")
    rtt_ms: tuple[int, ...] = param(6, UINTS, default=(), doc="RTT to each peer, aligned")
    loss_permille: tuple[int, ...] = param(7, UINTS, default=(), doc="loss to each, aligned")


class ConfMember(Record):
    """One roster row: a member and its last capacity report."""

    user: str = param(1, STRING)
    nat_class: int = param(2, UINT, default=0)
    upload_bps: int = param(3, UINT, default=0)
    encodes_per_s: int = param(4, UINT, default=0)
    decodes_per_s: int = param(5, UINT, default=0)
    rtt_ms: tuple[int, ...] = param(6, UINTS, default=(), doc="aligned with the roster's members")
    loss_permille: tuple[int, ...] = param(7, UINTS, default=(), doc="aligned, per mille")


class ConfInvite(Message, command=0x0067, kind=Kind.NOTICE, name="conf.invite"):
    """Join this conference (the sender is its host)."""

    conf_id: bytes = param(1, BYTES, doc="16 random bytes chosen by the first host")
    epoch: int = param(2, UINT)
    host: str = param(3, STRING)
    members: tuple[str, ...] = param(4, STRING, repeated=True)
    call_id: bytes | None = param(5, BYTES, default=None, doc="the 1:1 call this grows from")
    display_name: str = param(6, STRING, default="", doc="the host's full name, if public")


class ConfAccept(Message, command=0x0068, kind=Kind.NOTICE, name="conf.accept"):
    """The invitee joins; its capacity report comes along."""

    conf_id: bytes = param(1, BYTES)
    capacity: ConfCapacity = param(2, OBJECTS, record=ConfCapacity)


class ConfDecline(Message, command=0x0069, kind=Kind.NOTICE, name="conf.decline"):
    """The invitee does not join: rejected, busy, or it stopped ringing."""

    conf_id: bytes = param(1, BYTES)
    busy: int = param(2, UINT, default=0, doc="1: busy, 0: rejected")
    reason: str = param(3, STRING, default="")


class ConfRoster(Message, command=0x006A, kind=Kind.NOTICE, name="conf.roster"):
    """Who is in the conference at ``epoch`` (the sender is ``host``)."""

    conf_id: bytes = param(1, BYTES)
    epoch: int = param(2, UINT)
    host: str = param(3, STRING)
    members: tuple[ConfMember, ...] = param(4, OBJECTS, record=ConfMember, repeated=True)
    invited: tuple[str, ...] = param(5, STRING, repeated=True, doc="invites still open")


class ConfLeave(Message, command=0x006B, kind=Kind.NOTICE, name="conf.leave"):
    """The sender leaves (sent to every member, so a host change in flight loses nothing)."""

    conf_id: bytes = param(1, BYTES)
    epoch: int = param(2, UINT, default=0, doc="the roster epoch the sender knew")
    reason: str = param(3, STRING, default="")


class ConfCapacityReport(Message, command=0x006C, kind=Kind.NOTICE, name="conf.capacity"):
    """The sender measured its capacity again."""

    conf_id: bytes = param(1, BYTES)
    capacity: ConfCapacity = param(2, OBJECTS, record=ConfCapacity)


class ConfHandover(Message, command=0x006D, kind=Kind.NOTICE, name="conf.handover"):
    """``host`` mixes from ``epoch`` on; sent by it (a claim) or by ``previous_host``."""

    conf_id: bytes = param(1, BYTES)
    epoch: int = param(2, UINT, doc="the old roster's epoch plus one")
    host: str = param(3, STRING)
    previous_host: str = param(4, STRING)
    cause: int = param(5, UINT, doc="1 left, 2 lost, 3 rebalance")
    members: tuple[ConfMember, ...] = param(6, OBJECTS, record=ConfMember, repeated=True)
    invited: tuple[str, ...] = param(7, STRING, repeated=True)


class ConfEnd(Message, command=0x006E, kind=Kind.NOTICE, name="conf.end"):
    """The host tells one participant it is out: removed, not needed, or the end."""

    conf_id: bytes = param(1, BYTES)
    epoch: int = param(2, UINT, default=0)
    reason: str = param(3, STRING, default="", doc="removed, cancelled, timeout, silent, ended")


class ConfSpeakers(Message, command=0x006F, kind=Kind.NOTICE, name="conf.speakers"):
    """The host mixes ``speakers`` as speaking now (the sender is the host of ``epoch``)."""

    conf_id: bytes = param(1, BYTES)
    epoch: int = param(2, UINT, doc="the roster epoch the host holds")
    speakers: tuple[str, ...] = param(3, STRING, repeated=True, doc="at most 8, none: silence")


CONF_MESSAGES = (
    ConfInvite,
    ConfAccept,
    ConfDecline,
    ConfRoster,
    ConfLeave,
    ConfCapacityReport,
    ConfHandover,
    ConfEnd,
    ConfSpeakers,
)
ConfMessage = (
    ConfInvite
    | ConfAccept
    | ConfDecline
    | ConfRoster
    | ConfLeave
    | ConfCapacityReport
    | ConfHandover
    | ConfEnd
    | ConfSpeakers
)


# ---------------------------------------------------------------- checks


def check_user(name: str) -> None:
    """Raise :class:`BadValue` unless ``name`` is a canonical (lower-case) username."""
    if not _USERNAME.fullmatch(name):
        raise BadValue(f"not a canonical username: {name!r:.40}")


def _check_users(names: tuple[str, ...], what: str, most: int = MAX_MEMBERS) -> None:
    if len(names) > most:
        raise LimitExceeded(f"{what}: {len(names)} names, at most {most}")
    for name in names:
        check_user(name)
    if len(set(names)) != len(names):
        raise BadValue(f"{what}: a name appears twice")


def _check_figures(nat_class: int, rtt: tuple[int, ...], loss: tuple[int, ...]) -> None:
    if nat_class > MAX_NAT_CLASS:
        raise BadValue(f"unknown NAT class {nat_class}")
    if any(value > MAX_RTT_MS for value in rtt):
        raise BadValue(f"an RTT above {MAX_RTT_MS} ms")
    if any(value > MAX_LOSS_PERMILLE for value in loss):
        raise BadValue(f"a loss above {MAX_LOSS_PERMILLE} per mille")


def check_capacity(capacity: ConfCapacity) -> None:
    """Bounds of a capacity report: named peers with aligned, bounded figures."""
    _check_users(capacity.peers, "capacity peers", MAX_MEMBERS - 1)
    count = len(capacity.peers)
    if len(capacity.rtt_ms) != count or len(capacity.loss_permille) != count:
        raise BadValue("capacity path lists are not aligned with its peers")
    _check_figures(capacity.nat_class, capacity.rtt_ms, capacity.loss_permille)


def check_roster(host: str, members: tuple[ConfMember, ...], invited: tuple[str, ...]) -> None:
    """Bounds of a roster: 1..64 distinct members with ``host`` among them, aligned rows."""
    names = tuple(member.user for member in members)
    if not names:
        raise BadValue("a roster needs at least one member")
    _check_users((*names, *invited), "roster")
    if host not in names:
        raise BadValue("the host is not a member of its roster")
    for member in members:
        for row in (member.rtt_ms, member.loss_permille):
            if len(row) not in (0, len(names)):
                raise BadValue(f"path row of {member.user} is not aligned with the members")
        _check_figures(member.nat_class, member.rtt_ms, member.loss_permille)


def _check_common(message: ConfMessage) -> None:
    if len(message.conf_id) != CONF_ID_SIZE:
        raise BadValue(f"conf_id must be {CONF_ID_SIZE} bytes")
    reason = getattr(message, "reason", "")
    if len(reason) > MAX_REASON:
        raise LimitExceeded(f"reason longer than {MAX_REASON} characters")


def check_message(message: ConfMessage) -> None:
    """Raise a :class:`~hopline.wire.errors.DecodeError` if a decoded message breaks a bound."""
    _check_common(message)
    if isinstance(message, ConfInvite):
        _check_users(message.members, "invite members")
        check_user(message.host)
        if message.host not in message.members:
            raise BadValue("the inviting host is not a member")
    elif isinstance(message, ConfAccept | ConfCapacityReport):
        check_capacity(message.capacity)
    elif isinstance(message, ConfRoster):
        check_roster(message.host, message.members, message.invited)
    elif isinstance(message, ConfHandover):
        check_roster(message.host, message.members, message.invited)
        check_user(message.previous_host)
        if message.cause not in tuple(HandoverCause):
            raise BadValue(f"unknown handover cause {message.cause}")
        if message.previous_host == message.host:
            raise BadValue("a handover names the same host twice")
    elif isinstance(message, ConfSpeakers):
        _check_users(message.speakers, "speakers", MAX_SPEAKERS)


__all__ = [
    "CONF_ID_SIZE",
    "CONF_MESSAGES",
    "MAX_LOSS_PERMILLE",
    "MAX_MEMBERS",
    "MAX_NAT_CLASS",
    "MAX_REASON",
    "MAX_RTT_MS",
    "MAX_SPEAKERS",
    "UNMEASURED",
    "ConfAccept",
    "ConfCapacity",
    "ConfCapacityReport",
    "ConfDecline",
    "ConfEnd",
    "ConfHandover",
    "ConfInvite",
    "ConfLeave",
    "ConfMember",
    "ConfMessage",
    "ConfRoster",
    "ConfSpeakers",
    "HandoverCause",
    "check_capacity",
    "check_message",
    "check_roster",
    "check_user",
]
