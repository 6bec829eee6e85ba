"""Contacts: every table row and forbidden pair, presence rules, bodies, the synced list."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopline.messaging.contacts import (
    MAX_CONTACTS,
    MAX_DOCUMENT,
    MAX_MOOD,
    MAX_REQUEST_TEXT,
    TRANSITIONS,
    AcceptContact,
    AcceptReceived,
    BlockContact,
    ContactEvent,
    ContactList,
    ContactOp,
    ContactState,
    DeclineContact,
    DeclineReceived,
    LocalContactError,
    Presence,
    PresenceBody,
    PresenceStatus,
    RemoteContactError,
    RemoveContact,
    RemoveReceived,
    RequestContact,
    RequestReceived,
    UnblockContact,
    decode_contact_op,
    decode_presence,
    encode_contact_op,
    encode_presence,
    may_see_presence,
    step,
)
from hopline.messaging.envelope import MessageError
from hopline.wire import encode_record

S = ContactState
LOCAL_EVENTS: list[ContactEvent] = [
    RequestContact("hi"),
    AcceptContact(),
    DeclineContact(),
    RemoveContact(),
    BlockContact(),
    UnblockContact(),
]
REMOTE_EVENTS: list[ContactEvent] = [
    RequestReceived("hi"),
    AcceptReceived(),
    DeclineReceived(),
    RemoveReceived(),
]


@pytest.mark.parametrize("state", list(ContactState))
@pytest.mark.parametrize("event", LOCAL_EVENTS + REMOTE_EVENTS, ids=lambda e: type(e).__name__)
def test_every_pair_is_a_row_or_the_right_error(state: ContactState, event: ContactEvent) -> None:
    row = TRANSITIONS.get((state, type(event)))
    if row is not None:
        assert step(state, event) == row
        return
    expected = LocalContactError if event.LOCAL else RemoteContactError
    with pytest.raises(expected) as caught:
        step(state, event)
    assert caught.value.reason == "contact-transition"
    assert caught.value.state is state


def test_blocked_absorbs_everything_remote_and_sends_nothing() -> None:
    for event in REMOTE_EVENTS:
        assert step(S.BLOCKED, event) == (S.BLOCKED, None)
    assert all(step(s, BlockContact()).send is None for s in ContactState if s is not S.BLOCKED)


def flow(events: list[tuple[str, ContactEvent]]) -> tuple[ContactList, list[ContactOp | None]]:
    contacts = ContactList(device=b"dev")
    sent = [contacts.handle(name, event).send for name, event in events]
    return contacts, sent


def test_request_then_accept() -> None:
    contacts, sent = flow([("bob", RequestContact("it's alice")), ("bob", AcceptReceived())])
    assert sent == [ContactOp.REQUEST, None]
    assert contacts.state("bob") is S.ACCEPTED
    assert contacts.presence_audience() == ["bob"]


def test_incoming_request_accepted_and_declined() -> None:
    contacts, sent = flow(
        [
            ("carol", RequestReceived("hello from carol")),
            ("dave", RequestReceived("buy now")),
            ("carol", AcceptContact()),
            ("dave", DeclineContact()),
        ]
    )
    assert sent == [None, None, ContactOp.ACCEPT, ContactOp.DECLINE]
    assert contacts.state("carol") is S.ACCEPTED
    assert contacts.state("dave") is S.DECLINED
    entry = contacts.get("carol")
    assert entry is not None and entry.request_text == "hello from carol"


def test_crossing_requests_end_accepted() -> None:
    contacts, sent = flow([("bob", RequestContact()), ("bob", RequestReceived("me too"))])
    assert sent == [ContactOp.REQUEST, ContactOp.ACCEPT]
    assert contacts.state("bob") is S.ACCEPTED


def test_errors_leave_the_list_unchanged() -> None:
    contacts = ContactList(device=b"dev")
    with pytest.raises(RemoteContactError):
        contacts.handle("bob", AcceptReceived())
    with pytest.raises(LocalContactError):
        contacts.handle("bob", AcceptContact())
    assert contacts.get("bob") is None
    assert contacts.dropped["contact-transition"] == 1


def test_blocked_user_cannot_write_into_the_list() -> None:
    contacts, _ = flow([("eve", RequestReceived("hi")), ("eve", BlockContact())])
    clock = contacts.clock
    change = contacts.handle("eve", RequestReceived("x" * MAX_REQUEST_TEXT))
    assert change.state is S.BLOCKED and change.send is None
    assert contacts.clock == clock
    entry = contacts.get("eve")
    assert entry is not None and entry.request_text == "hi"
    assert contacts.dropped["blocked"] == 1
    contacts.handle("eve", UnblockContact())
    assert contacts.state("eve") is S.NONE


def test_presence_goes_only_to_accepted_contacts() -> None:
    assert [s for s in ContactState if may_see_presence(s)] == [S.ACCEPTED]


def test_presence_bodies() -> None:
    away = Presence(PresenceStatus.AWAY, "at lunch")
    assert decode_presence(encode_presence(away)) == away
    hidden = decode_presence(encode_presence(Presence(PresenceStatus.INVISIBLE, "secret")))
    assert hidden == Presence(PresenceStatus.OFFLINE, "")
    for bad in (PresenceBody(status=PresenceStatus.INVISIBLE), PresenceBody(status=9)):
        with pytest.raises(MessageError) as caught:
            decode_presence(encode_record(bad))
        assert caught.value.reason == "bad-field"
    with pytest.raises(MessageError):
        encode_presence(Presence(PresenceStatus.ONLINE, "m" * (MAX_MOOD + 1)))
    with pytest.raises(MessageError) as long_mood:
        decode_presence(encode_record(PresenceBody(status=1, mood="m" * (MAX_MOOD + 1))))
    assert long_mood.value.reason == "bad-field"


def test_contact_op_bodies() -> None:
    event, name = decode_contact_op(encode_contact_op(ContactOp.REQUEST, "hi", "Alice A."))
    assert (event, name) == (RequestReceived("hi"), "Alice A.")
    assert decode_contact_op(encode_contact_op(ContactOp.REMOVE))[0] == RemoveReceived()
    with pytest.raises(MessageError):
        encode_contact_op(ContactOp.REQUEST, "x" * (MAX_REQUEST_TEXT + 1))
    with pytest.raises(MessageError) as caught:
        decode_contact_op(encode_record(PresenceBody(status=77)))  # op 77
    assert caught.value.reason == "bad-field"


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_fuzz_bodies_raise_only_message_errors(data: bytes) -> None:
    for decode in (decode_contact_op, decode_presence, ContactList(device=b"d").merge):
        try:
            decode(data)
        except MessageError as exc:
            assert exc.reason


# --- the synced list ---------------------------------------------------------

NAMES = ["bob", "carol", "dave"]
LOCAL_MOVES = [RequestContact("hi"), AcceptContact(), RemoveContact(), BlockContact()]


def try_handle(contacts: ContactList, name: str, event: ContactEvent) -> None:
    """Apply the move if the table allows it; otherwise check that it is refused."""
    if (contacts.state(name), type(event)) in TRANSITIONS:
        contacts.handle(name, event)
    else:
        with pytest.raises((LocalContactError, RemoteContactError)):
            contacts.handle(name, event)


@settings(max_examples=100, deadline=None)
@given(
    moves=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.sampled_from(NAMES),
            st.sampled_from(LOCAL_MOVES + REMOTE_EVENTS),
        ),
        max_size=30,
    ),
    order=st.permutations([0, 1, 2]),
)
def test_devices_converge_in_any_exchange_order(
    moves: list[tuple[int, str, ContactEvent]], order: list[int]
) -> None:
    devices = [ContactList(device=bytes([65 + i])) for i in range(3)]
    for index, name, event in moves:
        try_handle(devices[index], name, event)
    documents = [doc for d in devices for doc in d.to_documents()]
    for target in order:
        for document in documents:
            devices[target].merge(document)
    # one more round so everybody saw everybody's merge result
    documents = [doc for d in devices for doc in d.to_documents()]
    for target in range(3):
        for document in documents:
            devices[target].merge(document)
    assert devices[0].entries() == devices[1].entries() == devices[2].entries()


def test_last_writer_wins_and_removal_syncs() -> None:
    laptop, phone = ContactList(device=b"laptop"), ContactList(device=b"phone")
    laptop.handle("bob", RequestContact())
    laptop.handle("bob", AcceptReceived())
    assert phone.merge(*laptop.to_documents()) == ["bob"]
    phone.handle("bob", RemoveContact())
    assert laptop.merge(*phone.to_documents()) == ["bob"]
    assert laptop.state("bob") is S.NONE
    assert laptop.merge(*phone.to_documents()) == []  # nothing newer


def test_list_is_bounded() -> None:
    contacts = ContactList(device=b"d")
    for i in range(MAX_CONTACTS):
        contacts.handle(f"user{i}", RequestReceived())
    with pytest.raises(MessageError) as caught:
        contacts.handle("one-too-many", RequestReceived())
    assert caught.value.reason == "contact-list-full"
    contacts.handle("user0", DeclineContact())
    contacts.handle("user0", RemoveContact())  # leaves a NONE entry that may be forgotten
    contacts.handle("newcomer", RequestReceived())
    assert contacts.get("user0") is None
    assert contacts.state("newcomer") is S.REQUESTED_BY_THEM
    assert len(contacts.entries()) == MAX_CONTACTS


def test_a_long_list_travels_in_parts_and_deltas() -> None:
    laptop, phone = ContactList(device=b"laptop"), ContactList(device=b"phone")
    for i in range(MAX_CONTACTS):
        laptop.handle(f"user-with-a-longer-name-{i:04d}", RequestReceived("x" * 40))
    documents = laptop.to_documents()
    assert len(documents) > 1
    assert all(len(document) <= MAX_DOCUMENT for document in documents)
    for document in reversed(documents):
        phone.merge(document)
    assert phone.entries() == laptop.entries()
    synced = laptop.clock
    laptop.handle("user-with-a-longer-name-0007", AcceptContact())
    (delta,) = laptop.to_documents(since=synced)
    assert phone.merge(delta) == ["user-with-a-longer-name-0007"]
    assert phone.entries() == laptop.entries()
    with pytest.raises(MessageError) as caught:
        phone.merge(b"\x00" * (MAX_DOCUMENT + 1))
    assert caught.value.reason == "too-large"
