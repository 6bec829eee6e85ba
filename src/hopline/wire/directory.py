"""Wire messages of the distributed user directory (command ids 0x0031-0x004F).

``presence.publish`` (0x0030) lives in :mod:`hopline.wire.commands`; the
records it carries (:class:`~hopline.wire.commands.PresenceRecord`,
:class:`~hopline.wire.commands.DeviceRecord`) are reused here.

==========  ==================  ================================================
id          name                purpose
==========  ==================  ================================================
0x0031      directory.lookup    where is a user: any SN asks one owner of the slot
0x0032      directory.replica   SN to SN: copy accepted records to the other owners
0x0033      directory.handover  SN to SN: push a slot's records to its new owner
0x0034      directory.fetch     SN to SN: a new owner pulls a slot, page by page
0x0035      directory.search    "white pages": profiles matching one field
0x0036      profile.publish     a client publishes (or clears) its public profile
==========  ==================  ================================================

Every message travels inside an authenticated session, so the receiver knows
which user or supernode sent it; handlers check that a client publishes only
its own presence record and profile.
"""

from __future__ import annotations

from enum import IntEnum

from hopline.wire.commands import PresenceRecord
from hopline.wire.schema import Message, Record, param
from hopline.wire.types import Kind, ParamType

UINT, STRING, OBJECTS = ParamType.UINT, ParamType.STRING, ParamType.OBJECTS


class LookupState(IntEnum):
    """What a lookup found: the ``state`` of :class:`DirectoryLookupReply`."""

    NOT_FOUND = 0
    ONLINE = 1
    OFFLINE = 2  # not online, but seen in the last 72 hours


class SearchField(IntEnum):
    """Which public profile field a search matches."""

    NAME = 1  # words and word prefixes of the full name
    CITY = 2
    COUNTRY = 3  # ISO 3166 alpha-2
    LANGUAGE = 4  # ISO 639-1


class PublicProfile(Record):
    """The public "white pages" fields of a user; only ``username`` is required."""

    username: str = param(1, STRING, doc="canonical username")
    full_name: str | None = param(2, STRING, default=None)
    city: str | None = param(3, STRING, default=None)
    country: str | None = param(4, STRING, default=None, doc="ISO 3166 alpha-2")
    language: str | None = param(5, STRING, default=None, doc="ISO 639-1")


class DirectoryLookup(Message, command=0x0031, kind=Kind.REQUEST, name="directory.lookup"):
    """Ask an owner of the user's slot for the user's presence record."""

    username: str = param(1, STRING)


class DirectoryLookupReply(Message, command=0x0031, kind=Kind.REPLY, name="directory.lookup"):
    """The record if known; ``state`` is a LookupState.

    An OFFLINE record keeps its devices and certificates (so messages can be
    sealed to them) but its endpoints are removed.
    """

    state: int = param(1, UINT, doc="a LookupState")
    record: PresenceRecord | None = param(2, OBJECTS, record=PresenceRecord, default=None)
    last_seen: int | None = param(3, UINT, default=None, doc="Unix seconds")


class StoreReplica(Message, command=0x0032, kind=Kind.REQUEST, name="directory.replica"):
    """SN to SN: store these records (each verified again by the receiver)."""

    records: tuple[PresenceRecord, ...] = param(1, OBJECTS, record=PresenceRecord, repeated=True)


class StoreReplicaReply(Message, command=0x0032, kind=Kind.REPLY, name="directory.replica"):
    """How many records of a :class:`StoreReplica` were stored, unchanged or refused."""

    stored: int = param(1, UINT, default=0)
    unchanged: int = param(2, UINT, default=0)
    refused: int = param(3, UINT, default=0)


class HandoverBatch(Message, command=0x0033, kind=Kind.REQUEST, name="directory.handover"):
    """SN to SN: the records of one slot, pushed to a node that now owns it.

    ``epoch`` identifies the membership view that made the transfer; ``last``
    marks the final batch of the slot.
    """

    slot: int = param(1, UINT)
    records: tuple[PresenceRecord, ...] = param(2, OBJECTS, record=PresenceRecord, repeated=True)
    epoch: int = param(3, UINT, default=0)
    last: int = param(4, UINT, default=1, doc="1 on the final batch of the slot")


class HandoverBatchReply(Message, command=0x0033, kind=Kind.REPLY, name="directory.handover"):
    """Acknowledges a :class:`HandoverBatch`."""

    slot: int = param(1, UINT)
    stored: int = param(2, UINT, default=0)
    refused: int = param(3, UINT, default=0)


class SlotFetch(Message, command=0x0034, kind=Kind.REQUEST, name="directory.fetch"):
    """SN to SN: a new owner pulls a slot's records from an old owner, a page at a time."""

    slot: int = param(1, UINT)
    cursor: str | None = param(2, STRING, default=None, doc="last username of the previous page")
    limit: int = param(3, UINT, default=100)


class SlotFetchReply(Message, command=0x0034, kind=Kind.REPLY, name="directory.fetch"):
    """One page of a slot's records; ``next_cursor`` is absent on the last page."""

    slot: int = param(1, UINT)
    records: tuple[PresenceRecord, ...] = param(2, OBJECTS, record=PresenceRecord, repeated=True)
    next_cursor: str | None = param(3, STRING, default=None)


class SearchRequest(Message, command=0x0035, kind=Kind.REQUEST, name="directory.search"):
    """Search one public field; sent to an owner of the slot of the query's first term."""

    field: int = param(1, UINT, doc="a SearchField")
    text: str = param(2, STRING)
    limit: int = param(3, UINT, default=20, doc="at most 50")
    cursor: str | None = param(4, STRING, default=None, doc="from the previous reply")


class SearchReply(Message, command=0x0035, kind=Kind.REPLY, name="directory.search"):
    """Matching profiles, ordered by username; ``next_cursor`` is absent at the end."""

    profiles: tuple[PublicProfile, ...] = param(1, OBJECTS, record=PublicProfile, repeated=True)
    next_cursor: str | None = param(2, STRING, default=None)


class ProfilePublish(Message, command=0x0036, kind=Kind.REQUEST, name="profile.publish"):
    """A client publishes its public profile (its own username only).

    A profile with no field but the username withdraws the user from search.
    """

    profile: PublicProfile = param(1, OBJECTS, record=PublicProfile)
    previous: PublicProfile | None = param(
        2,
        OBJECTS,
        record=PublicProfile,
        default=None,
        doc="the profile it replaces: owners of its terms drop their copy",
    )


class ProfilePublishReply(Message, command=0x0036, kind=Kind.REPLY, name="profile.publish"):
    """Acknowledges a :class:`ProfilePublish`."""

    terms: int = param(1, UINT, default=0, doc="how many search terms now index the profile")


__all__ = [
    "DirectoryLookup",
    "DirectoryLookupReply",
    "HandoverBatch",
    "HandoverBatchReply",
    "LookupState",
    "ProfilePublish",
    "ProfilePublishReply",
    "PublicProfile",
    "SearchField",
    "SearchReply",
    "SearchRequest",
    "SlotFetch",
    "SlotFetchReply",
    "StoreReplica",
    "StoreReplicaReply",
]
