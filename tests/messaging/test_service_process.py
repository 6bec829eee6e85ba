"""Contacts, presence and chats between logged-in clients, against real supernode processes.

Each device is a real :class:`~hopline.client.session.ClientSession` with a
:class:`~hopline.path.manager.PathManager` and a
:class:`~hopline.messaging.service.MessagingService` in this process, with
its own SQLite history, talking over real sockets through a real login
server and supernodes on loopback. What is checked is what users see:
events, contact states, histories in order, receipts, and the counters of
refused input.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hopline.client.profile import Profile
from hopline.client.session import ClientSession
from hopline.messaging.envelope import MessageKind, MessageRecord, new_message_id, seal_envelope
from hopline.messaging.groups import GroupOp, new_group_id
from hopline.messaging.history import History
from hopline.messaging.service import (
    MessagingConfig,
    MessagingError,
    MessagingService,
    _Stamp,
    direct_conversation,
)
from hopline.path.manager import PathManager
from hopline.testing.network import (
    FAST_PATHS,
    FAST_SESSION,
    LoopbackNet,
    another_device,
    logged_in,
    loopback_net,
    until,
)
from hopline.wire import Address
from hopline.wire.messaging import MsgAck, MsgDeliver, SealedItem

CONFIG = MessagingConfig(retry_s=0.5, lookup_ttl_s=0.2)
NAMES = itertools.count(1)
OFFLINE_COUNT = 200  # four pages of offline.fetch
SOURCES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    with loopback_net(tmp_path_factory.mktemp("messaging"), supernodes=2) as running:
        yield running


@dataclass
class Device:
    """One logged-in device with paths, a history and a messaging service."""

    profile: Profile
    session: ClientSession
    paths: PathManager
    chat: MessagingService
    keeper: asyncio.Task[None]
    events: list[dict[str, Any]] = field(default_factory=list)
    stopped: bool = False

    @property
    def user(self) -> str:
        return self.session.user

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == kind]


async def device(profile: Profile, *, start: bool = True) -> Device:
    session = ClientSession(profile, FAST_SESSION)
    await session.connect()
    paths = PathManager(session, FAST_PATHS)
    await paths.start()
    history = History.open(profile.path / "history.sqlite3")
    events: list[dict[str, Any]] = []
    chat = MessagingService(session, paths, history, config=CONFIG, on_event=events.append)
    keeper = asyncio.get_running_loop().create_task(session.run())
    one = Device(profile, session, paths, chat, keeper, events)
    if start:
        await chat.start()
    return one


async def new_user(net: LoopbackNet, name: str) -> Device:
    bind = f"127.0.0.{10 + next(SOURCES)}"  # the login server throttles per source address
    return await device(await logged_in(net.workdir, net.ls, name, bind=bind))


async def second_device(net: LoopbackNet, name: str, suffix: str = "2") -> Device:
    """``name`` logged in again, on a profile of its own (another device)."""
    bind = f"127.0.0.{10 + next(SOURCES)}"
    return await device(await another_device(net.workdir, name, suffix, bind))


async def stop(*devices: Device) -> None:
    for one in devices:
        if one.stopped:
            continue
        one.stopped = True
        await one.chat.close()
        one.keeper.cancel()
        await one.paths.close()
        await one.session.leave()
        await one.session.close()
        one.chat._history.close()


def history_texts(one: Device, peer: str) -> list[str]:
    """What ``one`` shows for ``peer`` (a user or a group id), read from its SQLite history."""
    cid = one.chat._conversation(peer)
    return [entry.text for entry in one.chat._history.latest(cid, 500)]


def group_of(one: Device, gid: str) -> tuple[str, frozenset[str]]:
    """The name and members of a group as ``one`` knows it (empty when unknown)."""
    group = one.chat.groups_table.get(bytes.fromhex(gid))
    return (group.name, group.members) if group is not None else ("", frozenset())


@pytest.fixture
async def trio(net: LoopbackNet) -> AsyncIterator[tuple[Device, Device, Device]]:
    n = next(NAMES)
    alice = await new_user(net, f"alice{n}")
    bob = await new_user(net, f"bob{n}")
    carol = await new_user(net, f"carol{n}")
    yield alice, bob, carol
    await stop(alice, bob, carol)


async def befriend(a: Device, b: Device) -> None:
    await a.chat.add_contact(b.user, "hello, it is me")
    assert await until(lambda: b.chat.contact_list.get(a.user) is not None)
    await b.chat.accept(a.user)
    assert await until(lambda: a.chat.contact_list.state(b.user).name == "ACCEPTED")


async def test_contact_request_accept_and_presence_only_to_contacts(
    trio: tuple[Device, Device, Device],
) -> None:
    alice, bob, carol = trio
    await alice.chat.add_contact(bob.user, "it is alice from the choir")
    assert await until(lambda: bool(bob.of("contact")))
    request = bob.of("contact")[-1]
    assert request["user"] == alice.user
    assert request["state"] == "requested_by_them"
    assert request["request_text"] == "it is alice from the choir"

    accepted = await bob.chat.accept(alice.user)
    assert accepted["state"] == "accepted"
    assert await until(lambda: alice.chat.contact_list.state(bob.user).name == "ACCEPTED")

    sent = await alice.chat.set_presence("away", "at lunch")
    assert sent["sent"].get("direct") == 1
    assert await until(lambda: any(p["mood"] == "at lunch" for p in bob.of("presence")))
    seen = {c["user"]: c for c in await bob.chat.contacts()}
    assert seen[alice.user]["presence"] == "away"
    assert seen[alice.user]["mood"] == "at lunch"

    await alice.chat.set_presence("invisible", "hidden mood")
    assert await until(lambda: bob.of("presence")[-1]["status"] == "offline")
    assert bob.of("presence")[-1]["mood"] == ""
    await asyncio.sleep(0.5)
    assert carol.of("presence") == []  # a stranger never hears alice's presence

    with pytest.raises(MessagingError) as refused:
        await carol.chat.accept(alice.user)  # nobody asked carol
    assert refused.value.reason == "contact-transition"


async def test_a_stranger_cannot_push_presence(trio: tuple[Device, Device, Device]) -> None:
    alice, _bob, carol = trio
    # carol forges a presence envelope to alice, who never accepted her.
    await carol.chat._push_presence([alice.user])
    assert await until(lambda: alice.chat.dropped["presence-not-allowed"] >= 1)
    assert alice.of("presence") == []


async def test_chat_round_trip_with_delivered_and_read_receipts(
    trio: tuple[Device, Device, Device],
) -> None:
    alice, bob, _carol = trio
    sent = await alice.chat.send(bob.user, "are you coming tonight?")
    assert sent["delivery"] == {"direct": 1}
    assert await until(lambda: bool(bob.of("message")))
    got = bob.of("message")[0]
    assert got["text"] == "are you coming tonight?"
    assert got["sender"] == alice.user
    assert got["message_id"] == sent["message_id"]
    assert got["peer"] == alice.user

    assert await until(lambda: any(r["receipt"] == "delivered" for r in alice.of("receipt")))
    reply = await bob.chat.send(alice.user, "yes, at eight")
    assert reply["clock"] > sent["clock"]  # bob had seen alice's message
    read = await bob.chat.mark_read(alice.user)
    assert read["read"] == 1
    assert (await bob.chat.mark_read(alice.user))["read"] == 0  # once only
    assert await until(lambda: any(r["receipt"] == "read" for r in alice.of("receipt")))

    shown = await alice.chat.history(bob.user)
    assert [m["text"] for m in shown] == ["are you coming tonight?", "yes, at eight"]
    receipts = shown[0]["receipts"]
    assert len(receipts) == 1
    assert receipts[0]["user"] == bob.user
    assert receipts[0]["delivered_at_ms"] is not None
    assert receipts[0]["read_at_ms"] is not None
    assert await until(lambda: len(history_texts(alice, bob.user)) == 2)
    assert history_texts(bob, alice.user) == history_texts(alice, bob.user)
    found = await bob.chat.search("eight")
    assert [m["text"] for m in found] == ["yes, at eight"]
    assert alice.chat.dropped["duplicate"] == 0
    assert bob.chat.dropped["duplicate"] == 0


async def test_every_device_of_both_users_shows_the_same_history(
    net: LoopbackNet, trio: tuple[Device, Device, Device]
) -> None:
    alice, bob, _carol = trio
    bob2 = await second_device(net, bob.user)
    alice2 = await second_device(net, alice.user)
    try:
        await befriend(alice, bob)
        assert await until(lambda: bob2.chat.contact_list.state(alice.user).name == "ACCEPTED")
        assert await until(lambda: alice2.chat.contact_list.state(bob.user).name == "ACCEPTED")

        first = await alice.chat.send(bob.user, "one")
        assert first["delivery"].get("direct") == 3  # bob's two devices, alice's other one
        await bob2.chat.send(alice.user, "two")
        await alice2.chat.send(bob.user, "three")
        devices = (alice, alice2, bob, bob2)
        peers = (bob.user, bob.user, alice.user, alice.user)

        def all_have_three() -> bool:
            return all(len(history_texts(d, p)) == 3 for d, p in zip(devices, peers, strict=True))

        assert await until(all_have_three)
        orders = [history_texts(d, p) for d, p in zip(devices, peers, strict=True)]
        assert orders[0] == ["one", "two", "three"]
        assert all(order == orders[0] for order in orders)
        synced = [m for m in alice2.of("message") if m["sender"] == alice.user]
        assert [m["text"] for m in synced] == ["one"]  # alice's first device's message
    finally:
        await stop(bob2, alice2)


async def test_a_group_of_three_sees_one_order(trio: tuple[Device, Device, Device]) -> None:
    alice, bob, carol = trio
    created = await alice.chat.create_group("climbing", [bob.user, carol.user])
    gid = created["group"]
    assert created["members"] == sorted([alice.user, bob.user, carol.user])
    assert await until(lambda: bool(bob.of("group")) and bool(carol.of("group")))
    await bob.chat.rename(gid, "climbing club")
    assert await until(lambda: group_of(carol, gid)[0] == "climbing club")

    async def talk(who: Device) -> None:
        for n in range(4):
            await who.chat.send(gid, f"{who.user} {n}")

    await asyncio.gather(talk(alice), talk(bob), talk(carol))
    members = (alice, bob, carol)
    assert await until(lambda: all(len(history_texts(m, gid)) == 12 for m in members))
    orders = [history_texts(m, gid) for m in members]
    assert orders[0] == orders[1] == orders[2]
    for who in members:  # each sender's messages keep their own order
        mine = [t for t in orders[0] if t.startswith(f"{who.user} ")]
        assert mine == [f"{who.user} {n}" for n in range(4)]

    await carol.chat.leave(gid)
    assert await until(lambda: carol.user not in group_of(alice, gid)[1])
    with pytest.raises(MessagingError) as refused:
        await carol.chat.send(gid, "still here?")
    assert refused.value.reason == "not-a-member"
    await alice.chat.send(gid, "carol has left")
    assert await until(lambda: len(history_texts(bob, gid)) == 13)
    await asyncio.sleep(0.3)
    assert len(history_texts(carol, gid)) == 12


async def test_malformed_and_forged_deliveries_are_refused_and_counted(
    trio: tuple[Device, Device, Device],
) -> None:
    alice, _bob, carol = trio
    await carol.chat.close()  # carol's own service stays out of the way: acks reach us here
    path = await carol.paths.connect(alice.user, 10.0)
    target = alice.profile.device_id
    record = MessageRecord(
        sender_user=carol.user,
        sender_device=carol.profile.device_id,
        recipient_user=alice.user,
        recipient_device=target,
        conversation_id=direct_conversation(carol.user, alice.user),
        message_id=new_message_id(),
        sent_at_ms=1,
        clock=1,
        kind=MessageKind.TEXT,
        body=b"signed by the wrong key",
    )
    forged = seal_envelope(record, alice.profile.keys.signing, alice.profile.keys.static.public)
    items = (
        SealedItem(to_user=alice.user, to_device=target, envelope=b"\x01" + b"\x00" * 80),
        SealedItem(to_user=alice.user, to_device=target, envelope=b"\x07garbage"),
        SealedItem(to_user=alice.user, to_device=b"\x99" * 16, envelope=forged),
        SealedItem(to_user=alice.user, to_device=target, envelope=forged),
    )
    path.notify(MsgDeliver(items=items))
    ack = await path.receive(10.0)
    assert isinstance(ack, MsgAck)
    assert ack.accepted == ()
    reasons = [r.reason for r in ack.refused]
    assert reasons == ["undecryptable", "bad-version", "wrong-recipient", "bad-signature"]
    dropped = alice.chat.dropped
    assert dropped["undecryptable"] == 1
    assert dropped["bad-version"] == 1
    assert dropped["wrong-recipient"] == 1
    assert dropped["bad-signature"] == 1
    assert alice.of("message") == []
    with pytest.raises(MessagingError) as too_long:
        await alice.chat.send(carol.user, "x" * 20000)
    assert too_long.value.reason == "bad-text"


async def test_messages_to_an_offline_user_arrive_at_login_exactly_once(
    net: LoopbackNet, trio: tuple[Device, Device, Device]
) -> None:
    alice, _bob, _carol = trio
    dave = await new_user(net, f"dave{next(NAMES)}")
    await stop(dave)
    await asyncio.sleep(CONFIG.lookup_ttl_s)
    sent = [
        await alice.chat.send(dave.user, f"while you were out {n}") for n in range(OFFLINE_COUNT)
    ]
    assert all(s["delivery"] == {"stored": 1} for s in sent), sent[0]["delivery"]

    back = await device(dave.profile)  # start() fetches and acknowledges
    try:
        texts = history_texts(back, alice.user)
        assert texts == [f"while you were out {n}" for n in range(OFFLINE_COUNT)]
        assert [m["text"] for m in back.of("message")] == texts
        assert await back.chat.fetch_offline() == 0  # acknowledged: not served again
        assert await until(
            lambda: sum(r["receipt"] == "delivered" for r in alice.of("receipt")) == OFFLINE_COUNT
        )
        assert back.chat.dropped["duplicate"] == 0
    finally:
        await stop(back)


async def test_both_devices_of_an_offline_user_get_every_message_once(
    net: LoopbackNet, trio: tuple[Device, Device, Device]
) -> None:
    alice, _bob, _carol = trio
    erin = await new_user(net, f"erin{next(NAMES)}")
    erin2 = await second_device(net, erin.user)
    hello = await alice.chat.send(erin.user, "hello")
    assert hello["delivery"] == {"direct": 2}
    await stop(erin, erin2)
    await asyncio.sleep(CONFIG.lookup_ttl_s)
    for n in range(10):
        sent = await alice.chat.send(erin.user, f"note {n}")
        assert sent["delivery"] == {"stored": 2}  # both devices, though both are offline
    first = await device(erin.profile)
    second = await device(erin2.profile)
    try:
        expected = ["hello"] + [f"note {n}" for n in range(10)]
        assert history_texts(first, alice.user) == expected
        assert history_texts(second, alice.user) == expected
        assert len(first.of("message")) == len(second.of("message")) == 10  # after login
    finally:
        await stop(first, second)


async def test_contacts_and_groups_survive_a_restart(
    trio: tuple[Device, Device, Device],
) -> None:
    alice, bob, carol = trio
    await befriend(alice, bob)
    created = await alice.chat.create_group("book club", [bob.user, carol.user])
    gid = created["group"]
    assert await until(lambda: group_of(bob, gid)[0] == "book club")
    await bob.chat.set_presence("dnd", "reading")
    await stop(bob)

    again = await device(bob.profile)
    try:
        contacts = {c["user"]: c["state"] for c in await again.chat.contacts()}
        assert contacts == {alice.user: "accepted"}
        assert [g["name"] for g in await again.chat.groups()] == ["book club"]
        assert again.chat.describe()["presence"] == "dnd"
        await again.chat.send(gid, "chapter three tonight")
        assert await until(lambda: history_texts(carol, gid) == ["chapter three tonight"])
        assert await until(lambda: any(p["mood"] == "reading" for p in alice.of("presence")))
    finally:
        await stop(again)


async def test_a_message_survives_the_loss_of_the_senders_home_supernode(
    tmp_path: Path,
) -> None:
    """The home dies under a send: the message waits in the outbox, then goes out."""
    with loopback_net(tmp_path, supernodes=3) as net:
        nodes = net.nodes
        alice = await new_user(net, "alice-storm")
        fred = await new_user(net, "fred-storm")
        await stop(fred)
        try:
            before = await alice.chat.send(fred.user, "before the storm")
            assert before["delivery"] == {"stored": 1}
            # The storing owner copies to the slot's other owners in the background;
            # give it that time before its process dies.
            await asyncio.sleep(1.0)
            by_address = {Address.parse(p.ready["listen"]): p for p in nodes}
            assert alice.session.home_address is not None
            by_address[alice.session.home_address].kill()  # SIGKILL: no goodbye
            await asyncio.sleep(CONFIG.lookup_ttl_s)
            during = await alice.chat.send(fred.user, "through the storm")
            # queued and retried in the background, or stored at once when the
            # session had already found a new home
            assert during["delivery"] in ({"queued": 1}, {"stored": 1}), during
            assert await until(lambda: alice.chat.describe()["outbox"] == 0, 30)
            back = await device(fred.profile)
            try:
                texts = history_texts(back, alice.user)
                assert texts == ["before the storm", "through the storm"]
            finally:
                await stop(back)
        finally:
            await stop(alice)


async def test_a_group_message_that_overtakes_its_invitation_is_kept(
    trio: tuple[Device, Device, Device],
) -> None:
    alice, bob, _carol = trio
    gid = new_group_id()
    _, audience, created = alice.chat.groups_table.local(
        GroupOp.CREATE, gid, name="late", users=(bob.user,)
    )
    await alice.chat.send(gid.hex(), "early bird")  # bob has not heard of the group
    assert await until(lambda: bob.chat.counters["orphans"] == 1)
    assert bob.chat._history.latest(gid) == []
    invitation = _Stamp(gid, MessageKind.GROUP_OP, created)
    await alice.chat._fan_out(audience, invitation, own=None)
    assert await until(lambda: history_texts(bob, gid.hex()) == ["early bird"])
    assert bob.of("message")[-1]["peer"] == gid.hex()
