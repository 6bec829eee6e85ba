"""Group chats as plain data: who is in a group, what it is called, who may change it.

A group is a conversation whose id is 16 random bytes chosen by the device
that creates it. Every change -- create, invite, leave, rename -- travels as
a ``GROUP_OP`` envelope (:class:`GroupOpBody`) to every device of every
member, before and after the change, and to the author's own other devices.
Each body carries the operation, a Lamport ``version`` and the author's
resulting state (name and member list, so that a new member learns the
whole group from its invitation).

Merging: each member and the name are separate last-writer-wins registers
stamped ``(version, author device)``. An invitation marks the listed users
present, a leave marks its author absent, a rename sets the name, each only
where its stamp is newer than the register's. So concurrent changes (a
rename while somebody leaves, two invitations) all survive, and devices
that see the same operations in any order end with the same group.

Who may do what (:meth:`GroupTable.apply` refuses the rest with a
:class:`~hopline.messaging.envelope.MessageError` ``group-refused``):

* only a current member changes a known group;
* a member may add members and rename the group, and may remove only
  itself (leave); nobody removes somebody else (operations only add
  members, or remove their author);
* an unknown group is adopted only when its state lists this user (an
  invitation or a creation) -- so nobody can plant groups on a device.

Bounds: :data:`MAX_MEMBERS` members, :data:`MAX_GROUP_NAME` characters of
name, :data:`MAX_GROUPS` groups per device (an invitation beyond that is
refused, counted), and at most :data:`MAX_MEMBERS` remembered departures per
group. Sans-I/O: no clock, no sockets; the caller seals and sends what
:meth:`GroupTable.local` returns.
"""

from __future__ import annotations

import enum
import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from hopline.messaging.envelope import MESSAGE_ID_SIZE, USERNAME_MAX, MessageError
from hopline.wire import ParamType, Record, WireError, decode_record, encode_record, param

__all__ = [
    "GROUP_ID_SIZE",
    "MAX_GROUPS",
    "MAX_GROUP_NAME",
    "MAX_MEMBERS",
    "Group",
    "GroupOp",
    "GroupOpBody",
    "GroupTable",
    "decode_group_op",
    "new_group_id",
]

GROUP_ID_SIZE: Final = MESSAGE_ID_SIZE
MAX_MEMBERS: Final = 100
MAX_GROUP_NAME: Final = 100
MAX_GROUPS: Final = 500
_MAX_BODY: Final = MAX_MEMBERS * (USERNAME_MAX + 4) + 4 * MAX_GROUP_NAME + 64


class GroupOp(enum.IntEnum):
    """What a ``GROUP_OP`` did (the state it carries is the result)."""

    CREATE = 1
    INVITE = 2
    LEAVE = 3
    RENAME = 4


class GroupOpBody(Record):
    """The body of a ``GROUP_OP`` envelope: the operation and the resulting state."""

    op: int = param(1, ParamType.UINT, doc="a GroupOp")
    version: int = param(2, ParamType.UINT, doc="the state's version")
    name: str = param(3, ParamType.STRING, default="")
    members: tuple[str, ...] = param(4, ParamType.STRING, repeated=True, doc="usernames")


@dataclass(frozen=True, slots=True)
class Group:
    """One group as this device holds it."""

    group_id: bytes
    name: str
    members: frozenset[str]
    version: int
    author_device: bytes
    """The device that wrote this state (the tie-breaker of equal versions)."""

    @property
    def stamp(self) -> tuple[int, bytes]:
        """The last-writer-wins order of group states."""
        return (self.version, self.author_device)

    def to_json(self) -> dict[str, Any]:
        """Everything needed to :meth:`from_json` the group again."""
        return {
            "group": self.group_id.hex(),
            "name": self.name,
            "members": sorted(self.members),
            "version": self.version,
            "author_device": self.author_device.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Group:
        """A group saved by :meth:`to_json` (``KeyError``/``ValueError``/``TypeError`` if bad)."""
        return cls(
            bytes.fromhex(data["group"]),
            str(data["name"]),
            frozenset(str(m) for m in data["members"]),
            int(data["version"]),
            bytes.fromhex(data["author_device"]),
        )

    def describe(self, me: str) -> dict[str, Any]:
        """A JSON-able summary."""
        return {
            "group": self.group_id.hex(),
            "name": self.name,
            "members": sorted(self.members),
            "version": self.version,
            "joined": me in self.members,
        }


def new_group_id() -> bytes:
    """16 fresh random bytes."""
    return secrets.token_bytes(GROUP_ID_SIZE)


def _check_state(name: str, members: frozenset[str]) -> None:
    if len(name) > MAX_GROUP_NAME:
        raise MessageError("bad-field", f"group name longer than {MAX_GROUP_NAME} characters")
    if not 1 <= len(members) <= MAX_MEMBERS:
        raise MessageError("bad-field", f"a group has 1-{MAX_MEMBERS} members")
    for member in members:
        if not 1 <= len(member.encode("utf-8")) <= USERNAME_MAX or member != member.lower():
            raise MessageError("bad-field", f"bad member name {member[:USERNAME_MAX]!r}")


def decode_group_op(body: bytes) -> tuple[GroupOp, int, str, frozenset[str]]:
    """The operation, version, name and members of a body (``MessageError`` if bad)."""
    if len(body) > _MAX_BODY:
        raise MessageError("too-large", f"group operation of {len(body)} bytes")
    try:
        record = decode_record(GroupOpBody, body)
    except WireError as exc:
        raise MessageError("malformed", exc.reason) from exc
    if record.op not in GroupOp._value2member_map_:
        raise MessageError("bad-field", f"unknown group operation {record.op}")
    members = frozenset(record.members)
    if len(members) != len(record.members):
        raise MessageError("bad-field", "a member is listed twice")
    _check_state(record.name, members)
    return GroupOp(record.op), record.version, record.name, members


def _encode(op: GroupOp, group: Group) -> bytes:
    return encode_record(
        GroupOpBody(
            op=op, version=group.version, name=group.name, members=tuple(sorted(group.members))
        )
    )


Stamp = tuple[int, bytes]
"""A register's last writer: (version, author device)."""


@dataclass(slots=True)
class _Registers:
    """The mergeable state of one group."""

    name: str
    name_stamp: Stamp
    marks: dict[str, tuple[Stamp, bool]]  # user -> (stamp, present)
    version: int
    author_device: bytes

    def view(self, group_id: bytes) -> Group:
        present = frozenset(u for u, (_, here) in self.marks.items() if here)
        return Group(group_id, self.name, present, self.version, self.author_device)

    def mark(self, user: str, stamp: Stamp, present: bool) -> bool:
        old = self.marks.get(user)
        if old is not None and old[0] >= stamp:
            return False
        self.marks[user] = (stamp, present)
        return old is None or old[1] != present

    def forget_departed(self) -> None:
        gone = sorted((s, u) for u, (s, here) in self.marks.items() if not here)
        for _, user in gone[: max(0, len(gone) - MAX_MEMBERS)]:
            del self.marks[user]


@dataclass
class GroupTable:
    """The groups of one user, as one device holds them (see the module notes)."""

    me: str
    device: bytes
    dropped: Counter[str] = field(default_factory=Counter)
    _groups: dict[bytes, _Registers] = field(default_factory=dict, init=False, repr=False)

    def get(self, group_id: bytes) -> Group | None:
        """The group with this id, if known."""
        registers = self._groups.get(group_id)
        return registers.view(group_id) if registers is not None else None

    def groups(self) -> list[Group]:
        """Every known group, by name then id."""
        views = [r.view(gid) for gid, r in self._groups.items()]
        return sorted(views, key=lambda g: (g.name, g.group_id))

    def is_member(self, group_id: bytes, user: str) -> bool:
        """Whether ``user`` is in the group as this device knows it."""
        registers = self._groups.get(group_id)
        return registers is not None and registers.marks.get(user, ((0, b""), False))[1]

    def restore(self, group: Group) -> None:
        """Put back a group saved earlier (a state already held is kept)."""
        _check_state(group.name, group.members or frozenset({self.me}))
        if len(group.group_id) != GROUP_ID_SIZE:
            raise MessageError("bad-field", "a group id is 16 bytes")
        if group.group_id in self._groups:
            return
        if len(self._groups) >= MAX_GROUPS:
            raise MessageError("group-refused", f"more than {MAX_GROUPS} groups")
        self._groups[group.group_id] = _adopt(group.stamp, group.name, group.members)

    # ------------------------------------------------------------ local changes

    def local(
        self, op: GroupOp, group_id: bytes, *, name: str | None = None, users: tuple[str, ...] = ()
    ) -> tuple[Group, frozenset[str], bytes]:
        """Make a change here: the new state, who must hear of it, and the body to send.

        Raises :class:`MessageError` ``group-refused`` when this user may
        not make it (not a member, unknown group), or ``bad-field``.
        """
        registers = self._groups.get(group_id)
        if op is GroupOp.CREATE:
            if registers is not None:
                raise MessageError("group-refused", "that group exists already")
            if len(self._groups) >= MAX_GROUPS:
                raise MessageError("group-refused", f"more than {MAX_GROUPS} groups")
            members = frozenset({self.me, *users})
            _check_state(name or "", members)
            registers = _adopt((1, self.device), name or "", members)
            self._groups[group_id] = registers
            group = registers.view(group_id)
            return group, members, _encode(op, group)
        if registers is None or not self.is_member(group_id, self.me):
            raise MessageError("group-refused", "not a member of that group")
        before = registers.view(group_id).members
        stamp = (registers.version + 1, self.device)
        _check_change(op, before, name, users)
        _change(registers, op, stamp, self.me, name, frozenset(users))
        group = registers.view(group_id)
        return group, before | group.members, _encode(op, group)

    # ------------------------------------------------------------ remote changes

    def apply(
        self, group_id: bytes, author: str, author_device: bytes, body: bytes
    ) -> Group | None:
        """A change another device sent; the new state, or ``None`` if nothing changed.

        Raises :class:`MessageError` (``group-refused`` or a decoding reason).
        """
        op, version, name, members = decode_group_op(body)
        stamp = (version, author_device)
        registers = self._groups.get(group_id)
        if registers is None:
            self._check_new(op, author, members)
            self._groups[group_id] = _adopt(stamp, name, members)
            return self.get(group_id)
        if not self.is_member(group_id, author):
            self._refuse("the author is not a member")
        if not _change(registers, op, stamp, author, name, members):
            self.dropped["group-stale"] += 1
            return None
        return registers.view(group_id)

    def _check_new(self, op: GroupOp, author: str, members: frozenset[str]) -> None:
        if self.me not in members:
            self._refuse("a group this user is not in")
        if len(self._groups) >= MAX_GROUPS:
            self._refuse(f"more than {MAX_GROUPS} groups")
        if op is not GroupOp.LEAVE and author not in members:
            self._refuse("the author is not a member")

    def _refuse(self, why: str) -> None:
        self.dropped["group-refused"] += 1
        raise MessageError("group-refused", why)


def _adopt(stamp: Stamp, name: str, members: frozenset[str]) -> _Registers:
    marks = dict.fromkeys(members, (stamp, True))
    return _Registers(name, stamp, marks, stamp[0], stamp[1])


def _check_change(
    op: GroupOp, members: frozenset[str], name: str | None, users: tuple[str, ...]
) -> None:
    if op is GroupOp.INVITE:
        _check_state("", members | frozenset(users))
    if op is GroupOp.RENAME:
        _check_state(name or "", members)


def _change(
    registers: _Registers,
    op: GroupOp,
    stamp: Stamp,
    author: str,
    name: str | None,
    members: frozenset[str],
) -> bool:
    """Apply one operation to the registers; whether anything visible changed."""
    changed = False
    if op in (GroupOp.CREATE, GroupOp.INVITE):
        for user in members:
            changed |= registers.mark(user, stamp, True)
    elif op is GroupOp.LEAVE:
        changed = registers.mark(author, stamp, False)
        registers.forget_departed()
    elif name is not None and stamp > registers.name_stamp:
        changed = registers.name != name
        registers.name, registers.name_stamp = name, stamp
    if stamp > (registers.version, registers.author_device):
        registers.version, registers.author_device = stamp[0], stamp[1]
    return changed
