"""Contacts with authorisation, presence rules, and the contact list all devices share.

The state machine, as plain data (after h11's ``_state.py``, like
:mod:`hopline.calls.state`): the states are :class:`ContactState`, the
events are frozen dataclasses, and every allowed move is one row of
:data:`TRANSITIONS`, keyed by ``(state, event type)``, whose value is a
:class:`Move`: the next state and the :class:`ContactOp` to send to the
other user (or ``None``). A missing row is a :class:`LocalContactError`
(this program asked for something the state does not allow: a bug in the
caller) or a :class:`RemoteContactError` (the other user sent an operation
that makes no sense now: drop it and count it). Both are
:class:`~hopline.messaging.envelope.MessageError` with reason
``contact-transition``, so a shell counts every refused message the same way.

A blocked user learns nothing: blocking sends no operation, and anything a
blocked user sends afterwards is absorbed by the ``BLOCKED`` rows without an
answer. Crossing requests (both sides ask at once) end ``ACCEPTED``.

Presence (:class:`PresenceStatus` and a mood text) goes only to contacts in
state ``ACCEPTED`` (:func:`may_see_presence`); ``INVISIBLE`` is sent to them
as ``OFFLINE`` with no mood (:func:`encode_presence`), and no peer may claim
to be invisible.

The contact list follows the user to every device: :class:`ContactList`
keeps one :class:`ContactEntry` per username stamped with a Lamport clock
and the device id that wrote it; :meth:`ContactList.merge` takes another
device's document and keeps, per contact, the entry with the larger
``(clock, device)`` (last writer wins), so devices that exchange documents
in any order end with the same list. :meth:`ContactList.to_documents`
cuts the list (or only the entries newer than a clock the other device has
seen) into documents that each fit one envelope body; any subset of entries
is a valid document. Removed contacts stay as ``NONE``
entries so that the removal reaches the other devices too. The list is
bounded (:data:`MAX_CONTACTS`; when full, the oldest ``NONE`` entry goes).

Bodies of ``CONTACT_OP`` and ``PRESENCE`` envelopes and the synced document
are object lists (:class:`ContactOpBody`, :class:`PresenceBody`,
:class:`ContactListDocument`); their decoders raise only
:class:`~hopline.messaging.envelope.MessageError`.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar, Final, NamedTuple, TypeVar

from hopline.messaging.envelope import MAX_BODY, USERNAME_MAX, MessageError
from hopline.wire import ParamType, Record, WireError, decode_record, encode_record, param

__all__ = [
    "MAX_CONTACTS",
    "MAX_DISPLAY_NAME",
    "MAX_DOCUMENT",
    "MAX_MOOD",
    "MAX_REQUEST_TEXT",
    "TRANSITIONS",
    "AcceptContact",
    "AcceptReceived",
    "BlockContact",
    "ContactChange",
    "ContactEntry",
    "ContactEvent",
    "ContactItem",
    "ContactList",
    "ContactListDocument",
    "ContactOp",
    "ContactOpBody",
    "ContactProtocolError",
    "ContactState",
    "DeclineContact",
    "DeclineReceived",
    "LocalContactError",
    "LocalContactEvent",
    "Move",
    "Presence",
    "PresenceBody",
    "PresenceStatus",
    "RemoteContactError",
    "RemoteContactEvent",
    "RemoveContact",
    "RemoveReceived",
    "RequestContact",
    "RequestReceived",
    "UnblockContact",
    "decode_contact_op",
    "decode_presence",
    "encode_contact_op",
    "encode_presence",
    "may_see_presence",
    "step",
]

MAX_CONTACTS: Final = 1000
MAX_REQUEST_TEXT: Final = 500
"""Characters of an authorisation request's message."""
MAX_DISPLAY_NAME: Final = 100
MAX_MOOD: Final = 200
MAX_DOCUMENT: Final = MAX_BODY
"""Largest encoded contact-list document: one envelope body (a list is sent in parts)."""


class ContactState(enum.Enum):
    """Where this user stands with one other user."""

    NONE = 0
    """Not a contact (never was, or removed)."""
    REQUESTED_BY_ME = 1
    """We asked for authorisation; no answer yet."""
    REQUESTED_BY_THEM = 2
    """They asked; we have not answered."""
    ACCEPTED = 3
    """Both agreed: presence flows both ways."""
    DECLINED = 4
    """A request was declined (by either side)."""
    BLOCKED = 5
    """We block them: nothing they send gets through."""


class ContactOp(enum.IntEnum):
    """An operation one user sends another in a ``CONTACT_OP`` envelope."""

    REQUEST = 1
    ACCEPT = 2
    DECLINE = 3
    REMOVE = 4


# --- events -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactEvent:
    """Base of all contact events."""

    LOCAL: ClassVar[bool] = True


@dataclass(frozen=True, slots=True)
class LocalContactEvent(ContactEvent):
    """Something this user did."""


@dataclass(frozen=True, slots=True)
class RemoteContactEvent(ContactEvent):
    """An operation that arrived from the other user."""

    LOCAL: ClassVar[bool] = False


@dataclass(frozen=True, slots=True)
class RequestContact(LocalContactEvent):
    """Ask the other user for authorisation, with a message."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class AcceptContact(LocalContactEvent):
    """Accept their request."""


@dataclass(frozen=True, slots=True)
class DeclineContact(LocalContactEvent):
    """Decline their request."""


@dataclass(frozen=True, slots=True)
class RemoveContact(LocalContactEvent):
    """Remove the contact (or withdraw our request)."""


@dataclass(frozen=True, slots=True)
class BlockContact(LocalContactEvent):
    """Block the user (sends nothing)."""


@dataclass(frozen=True, slots=True)
class UnblockContact(LocalContactEvent):
    """Lift a block; the user is then not a contact."""


@dataclass(frozen=True, slots=True)
class RequestReceived(RemoteContactEvent):
    """They ask for authorisation."""

    text: str = ""


@dataclass(frozen=True, slots=True)
class AcceptReceived(RemoteContactEvent):
    """They accepted our request."""


@dataclass(frozen=True, slots=True)
class DeclineReceived(RemoteContactEvent):
    """They declined our request."""


@dataclass(frozen=True, slots=True)
class RemoveReceived(RemoteContactEvent):
    """They removed us (or withdrew their request)."""


class ContactProtocolError(MessageError):
    """A contact event arrived that the state does not allow."""

    def __init__(self, state: ContactState, event: ContactEvent) -> None:
        super().__init__(
            "contact-transition", f"{type(event).__name__} not allowed in state {state.name}"
        )
        self.state = state
        self.event = event


class LocalContactError(ContactProtocolError):
    """This program asked for a move the state does not allow (a local bug)."""


class RemoteContactError(ContactProtocolError):
    """The other user sent an operation the state does not allow (drop and count)."""


# --- the table --------------------------------------------------------------


class Move(NamedTuple):
    """One row's result: the next state and what to send to the other user."""

    target: ContactState
    send: ContactOp | None


_C = ContactState
_OP = ContactOp
_NOT_BLOCKED = tuple(s for s in ContactState if s is not _C.BLOCKED)
_REMOTE = (RequestReceived, AcceptReceived, DeclineReceived, RemoveReceived)

_LOCAL_ROWS: dict[tuple[ContactState, type[ContactEvent]], Move] = {
    (_C.NONE, RequestContact): Move(_C.REQUESTED_BY_ME, _OP.REQUEST),
    (_C.DECLINED, RequestContact): Move(_C.REQUESTED_BY_ME, _OP.REQUEST),
    (_C.REQUESTED_BY_ME, RequestContact): Move(_C.REQUESTED_BY_ME, _OP.REQUEST),
    (_C.REQUESTED_BY_THEM, RequestContact): Move(_C.ACCEPTED, _OP.ACCEPT),
    (_C.REQUESTED_BY_THEM, AcceptContact): Move(_C.ACCEPTED, _OP.ACCEPT),
    (_C.REQUESTED_BY_THEM, DeclineContact): Move(_C.DECLINED, _OP.DECLINE),
    (_C.REQUESTED_BY_ME, RemoveContact): Move(_C.NONE, _OP.REMOVE),
    (_C.REQUESTED_BY_THEM, RemoveContact): Move(_C.NONE, _OP.DECLINE),
    (_C.ACCEPTED, RemoveContact): Move(_C.NONE, _OP.REMOVE),
    (_C.DECLINED, RemoveContact): Move(_C.NONE, None),
    **{(s, BlockContact): Move(_C.BLOCKED, None) for s in _NOT_BLOCKED},
    (_C.BLOCKED, UnblockContact): Move(_C.NONE, None),
}

_REMOTE_ROWS: dict[tuple[ContactState, type[ContactEvent]], Move] = {
    (_C.NONE, RequestReceived): Move(_C.REQUESTED_BY_THEM, None),
    (_C.DECLINED, RequestReceived): Move(_C.REQUESTED_BY_THEM, None),
    (_C.REQUESTED_BY_THEM, RequestReceived): Move(_C.REQUESTED_BY_THEM, None),
    (_C.REQUESTED_BY_ME, RequestReceived): Move(_C.ACCEPTED, _OP.ACCEPT),
    (_C.ACCEPTED, RequestReceived): Move(_C.ACCEPTED, _OP.ACCEPT),
    (_C.REQUESTED_BY_ME, AcceptReceived): Move(_C.ACCEPTED, None),
    (_C.ACCEPTED, AcceptReceived): Move(_C.ACCEPTED, None),
    (_C.REQUESTED_BY_ME, DeclineReceived): Move(_C.DECLINED, None),
    (_C.DECLINED, DeclineReceived): Move(_C.DECLINED, None),
    **{(s, RemoveReceived): Move(_C.NONE, None) for s in _NOT_BLOCKED},
    **{(_C.BLOCKED, event): Move(_C.BLOCKED, None) for event in _REMOTE},
}

TRANSITIONS: dict[tuple[ContactState, type[ContactEvent]], Move] = {
    **_LOCAL_ROWS,
    **_REMOTE_ROWS,
}
"""``TRANSITIONS[(state, event type)]`` is the :class:`Move`; a missing key is an error."""

_EVENT_FOR_OP: Final[dict[ContactOp, type[RemoteContactEvent]]] = {
    ContactOp.REQUEST: RequestReceived,
    ContactOp.ACCEPT: AcceptReceived,
    ContactOp.DECLINE: DeclineReceived,
    ContactOp.REMOVE: RemoveReceived,
}


def step(state: ContactState, event: ContactEvent) -> Move:
    """Look one move up; raise the local or remote error when the table has no row."""
    move = TRANSITIONS.get((state, type(event)))
    if move is None:
        error = LocalContactError if event.LOCAL else RemoteContactError
        raise error(state, event)
    return move


def may_see_presence(state: ContactState) -> bool:
    """Whether a user in ``state`` gets our presence: only accepted contacts."""
    return state is ContactState.ACCEPTED


# --- bodies -----------------------------------------------------------------


class ContactOpBody(Record):
    """The body of a ``CONTACT_OP`` envelope."""

    op: int = param(1, ParamType.UINT, doc="a ContactOp")
    text: str = param(2, ParamType.STRING, default="", doc="the request's message")
    display_name: str = param(3, ParamType.STRING, default="", doc="the sender's name")


_R = TypeVar("_R", bound=Record)


def _decode(cls: type[_R], body: bytes, limit: int) -> _R:
    if len(body) > limit:
        raise MessageError("too-large", f"{cls.__name__} of {len(body)} bytes")
    try:
        return decode_record(cls, body)
    except WireError as exc:
        raise MessageError("malformed", exc.reason) from exc


def _check_text(name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise MessageError("bad-field", f"{name} longer than {limit} characters")


def encode_contact_op(op: ContactOp, text: str = "", display_name: str = "") -> bytes:
    """The body that carries ``op`` to the other user."""
    _check_text("text", text, MAX_REQUEST_TEXT)
    _check_text("display_name", display_name, MAX_DISPLAY_NAME)
    return encode_record(ContactOpBody(op=op, text=text, display_name=display_name))


def decode_contact_op(body: bytes) -> tuple[RemoteContactEvent, str]:
    """The remote event a body stands for, and the sender's display name."""
    record = _decode(ContactOpBody, body, 4 * (MAX_REQUEST_TEXT + MAX_DISPLAY_NAME) + 32)
    if record.op not in ContactOp._value2member_map_:
        raise MessageError("bad-field", f"unknown contact operation {record.op}")
    _check_text("text", record.text, MAX_REQUEST_TEXT)
    _check_text("display_name", record.display_name, MAX_DISPLAY_NAME)
    op = ContactOp(record.op)
    event = RequestReceived(record.text) if op is ContactOp.REQUEST else _EVENT_FOR_OP[op]()
    return event, record.display_name


class PresenceStatus(enum.IntEnum):
    """What a user shows."""

    OFFLINE = 0
    ONLINE = 1
    AWAY = 2
    DND = 3
    """Do not disturb."""
    INVISIBLE = 4
    """Online, but shown to everybody as offline."""


@dataclass(frozen=True, slots=True)
class Presence:
    """A contact's status and mood text."""

    status: PresenceStatus
    mood: str = ""


class PresenceBody(Record):
    """The body of a ``PRESENCE`` envelope."""

    status: int = param(1, ParamType.UINT, doc="a PresenceStatus, never INVISIBLE")
    mood: str = param(2, ParamType.STRING, default="")


def encode_presence(presence: Presence) -> bytes:
    """The body to send to accepted contacts; invisible goes out as offline, no mood."""
    _check_text("mood", presence.mood, MAX_MOOD)
    if presence.status in (PresenceStatus.INVISIBLE, PresenceStatus.OFFLINE):
        return encode_record(PresenceBody(status=PresenceStatus.OFFLINE))
    return encode_record(PresenceBody(status=presence.status, mood=presence.mood))


def decode_presence(body: bytes) -> Presence:
    """A contact's presence from a body; refuses unknown or invisible statuses."""
    record = _decode(PresenceBody, body, 4 * MAX_MOOD + 16)
    if record.status not in PresenceStatus._value2member_map_:
        raise MessageError("bad-field", f"unknown presence status {record.status}")
    if record.status == PresenceStatus.INVISIBLE:
        raise MessageError("bad-field", "no peer announces itself invisible")
    _check_text("mood", record.mood, MAX_MOOD)
    return Presence(PresenceStatus(record.status), record.mood)


# --- the synced list --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ContactEntry:
    """One contact as the list holds it, stamped by the device that wrote it last."""

    username: str
    state: ContactState
    clock: int
    device: bytes
    display_name: str = ""
    request_text: str = ""

    @property
    def stamp(self) -> tuple[int, bytes]:
        """The last-writer-wins order: (clock, device id)."""
        return (self.clock, self.device)


class ContactItem(Record):
    """One entry of a :class:`ContactListDocument`."""

    username: str = param(1, ParamType.STRING)
    state: int = param(2, ParamType.UINT, doc="a ContactState")
    clock: int = param(3, ParamType.UINT)
    device: bytes = param(4, ParamType.BYTES, doc="the device that wrote the entry")
    display_name: str = param(5, ParamType.STRING, default="")
    request_text: str = param(6, ParamType.STRING, default="")


class ContactListDocument(Record):
    """The whole contact list, as one device sends it to the user's others."""

    items: tuple[ContactItem, ...] = param(1, ParamType.OBJECTS, record=ContactItem, repeated=True)


@dataclass(frozen=True, slots=True)
class ContactChange:
    """The result of :meth:`ContactList.handle`."""

    username: str
    previous: ContactState
    state: ContactState
    send: ContactOp | None
    """The operation to send to the other user, if any."""


def _entry_from_item(item: ContactItem) -> ContactEntry:
    if item.state not in ContactState._value2member_map_:
        raise MessageError("bad-field", f"unknown contact state {item.state}")
    _check_username(item.username)
    _check_text("display_name", item.display_name, MAX_DISPLAY_NAME)
    _check_text("request_text", item.request_text, MAX_REQUEST_TEXT)
    return ContactEntry(
        item.username,
        ContactState(item.state),
        item.clock,
        item.device,
        item.display_name,
        item.request_text,
    )


_ITEM_FRAMING: Final = 8
"""Bytes a nested item may add around its own encoding (tag and length varints)."""


def _item_from_entry(entry: ContactEntry) -> ContactItem:
    return ContactItem(
        username=entry.username,
        state=entry.state.value,
        clock=entry.clock,
        device=entry.device,
        display_name=entry.display_name,
        request_text=entry.request_text,
    )


def _document(items: list[ContactItem]) -> bytes:
    return encode_record(ContactListDocument(items=tuple(items)))


def _check_username(username: str) -> None:
    if not 1 <= len(username.encode("utf-8")) <= USERNAME_MAX:
        raise MessageError("bad-field", "username must be 1-64 bytes")


@dataclass
class ContactList:
    """This user's contacts, as one device holds them (see the module notes)."""

    device: bytes
    """The id of the device holding this copy (the tie-breaker of its writes)."""
    clock: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    _entries: dict[str, ContactEntry] = field(default_factory=dict, init=False, repr=False)

    def state(self, username: str) -> ContactState:
        """Where we stand with ``username`` (``NONE`` if unknown)."""
        entry = self._entries.get(username)
        return entry.state if entry is not None else ContactState.NONE

    def get(self, username: str) -> ContactEntry | None:
        """The entry for ``username``, if any."""
        return self._entries.get(username)

    def entries(self) -> list[ContactEntry]:
        """All entries, by username."""
        return [self._entries[name] for name in sorted(self._entries)]

    def presence_audience(self) -> list[str]:
        """The users who get our presence (accepted contacts), by username."""
        return [e.username for e in self.entries() if may_see_presence(e.state)]

    def handle(self, username: str, event: ContactEvent, display_name: str = "") -> ContactChange:
        """Apply a local or remote event for ``username``; the list records it.

        Raises :class:`LocalContactError` / :class:`RemoteContactError` for a
        move the table does not allow (nothing changes then).
        """
        _check_username(username)
        previous = self.state(username)
        try:
            move = step(previous, event)
        except RemoteContactError:
            self.dropped["contact-transition"] += 1
            raise
        if previous is ContactState.BLOCKED and not event.LOCAL:
            self.dropped["blocked"] += 1
            return ContactChange(username, previous, previous, None)
        self._record(username, move.target, getattr(event, "text", None), display_name)
        return ContactChange(username, previous, move.target, move.send)

    def _record(self, username: str, state: ContactState, text: str | None, name: str) -> None:
        """Write the entry with a new stamp, unless nothing in it changes."""
        old = self._entries.get(username)
        text = text if text is not None else (old.request_text if old else "")
        _check_text("request_text", text, MAX_REQUEST_TEXT)
        _check_text("display_name", name, MAX_DISPLAY_NAME)
        name = name or (old.display_name if old else "")
        if old is not None and (old.state, old.request_text, old.display_name) == (
            state,
            text,
            name,
        ):
            return
        self.clock += 1
        if not self._put(ContactEntry(username, state, self.clock, self.device, name, text)):
            raise MessageError("contact-list-full", f"more than {MAX_CONTACTS} contacts")

    def _put(self, entry: ContactEntry) -> bool:
        """Store ``entry``; when full, forget the oldest removed contact or refuse."""
        if entry.username not in self._entries and len(self._entries) >= MAX_CONTACTS:
            removed = [e for e in self._entries.values() if e.state is ContactState.NONE]
            if not removed:
                self.dropped["contact-list-full"] += 1
                return False
            del self._entries[min(removed, key=lambda e: e.stamp).username]
        self._entries[entry.username] = entry
        return True

    def to_documents(self, since: int = 0, max_bytes: int = MAX_DOCUMENT) -> list[bytes]:
        """The entries written after clock ``since``, as documents of at most ``max_bytes``.

        Any subset of entries is a valid document (merging is per contact), so
        a long list travels as several envelope bodies and a device that was
        in sync up to clock ``since`` needs only the newer entries.
        """
        documents: list[bytes] = []
        batch: list[ContactItem] = []
        size = 0
        for entry in (e for e in self.entries() if e.clock > since):
            item = _item_from_entry(entry)
            cost = len(encode_record(item)) + _ITEM_FRAMING
            if batch and size + cost > max_bytes:
                documents.append(_document(batch))
                batch, size = [], 0
            batch.append(item)
            size += cost
        if batch or not documents:
            documents.append(_document(batch))
        return documents

    def merge(self, document: bytes) -> list[str]:
        """Merge another device's document (last writer wins per contact).

        Returns the usernames whose entry changed. Raises :class:`MessageError`
        for a malformed or oversized document (nothing changes then).
        """
        record = _decode(ContactListDocument, document, MAX_DOCUMENT)
        if len(record.items) > MAX_CONTACTS:
            raise MessageError("too-large", f"more than {MAX_CONTACTS} contacts")
        incoming = [_entry_from_item(item) for item in record.items]
        changed = []
        for entry in incoming:
            self.clock = max(self.clock, entry.clock)
            old = self._entries.get(entry.username)
            if (old is None or entry.stamp > old.stamp) and self._put(entry):
                changed.append(entry.username)
        return changed
