"""The offline store on real supernode processes: store, replicate, survive a kill, deliver.

A login server and four supernodes run as processes on loopback (three
owners per slot, so a user's home supernode may or may not own the user's
slot); clients are in-process :class:`~hopline.client.session.ClientSession`
objects talking to their home supernode over real sockets, or a certified
client endpoint connected to a chosen supernode. What is checked is what devices get
back (``offline.fetch``), what the supernodes refuse and why, and what the
supernodes' SQLite files hold.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile
from hopline.client.session import ClientSession
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc, enrollment_token
from hopline.identity import CertificateVerifier, Role
from hopline.messaging.envelope import MessageRecord, seal_envelope
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import Endpoint, PeerConnection, RequestError
from hopline.supernode.directory_service import REPLICATION
from hopline.testing.network import (
    FAST_SESSION,
    PASSWORD,
    logged_in,
    scrape_metrics,
    start_network,
    wait_overlay,
)
from hopline.wire import Address, Message
from hopline.wire.offline import (
    OfflineAck,
    OfflineAckReply,
    OfflineFetch,
    OfflineFetchReply,
    OfflineStoreReply,
    OfflineStoreRequest,
    SealedEnvelope,
)

NAMES = itertools.count(1)
SOURCES = itertools.count(1)


@dataclass
class Net:
    """A login server and four supernodes."""

    cluster: Cluster
    ls: Proc
    nodes: list[Proc]
    workdir: Path

    def database(self, n: int) -> Path:
        return self.workdir / f"sn{n}" / "offline.sqlite3"

    def owners(self, user: str) -> list[int]:
        """Indexes of the supernodes that own ``user``'s slot."""
        ids = [p.ready["node_id"] for p in self.nodes]
        owners = OwnershipMap(sorted(ids), REPLICATION).owners_of_user(user)
        return sorted(ids.index(node) for node in owners)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    workdir = tmp_path_factory.mktemp("offline")
    with Cluster(workdir / "logs") as cluster:
        ls, nodes = start_network(cluster, workdir, supernodes=4)
        yield Net(cluster, ls, nodes, workdir)


async def register(net: Net, name: str) -> Profile:
    return await logged_in(net.workdir, net.ls, name, bind=f"127.0.0.{10 + next(SOURCES)}")


async def second_profile(net: Net, name: str) -> Profile:
    """``name`` logged in again on a profile of its own (another device)."""
    profile = Profile.open(net.workdir / f"{name}-2")
    first = Profile.open(net.workdir / name)
    profile.pin_login_server(first.login_server, first.ls_key)
    await account.login(profile, name, PASSWORD, bind=f"127.0.0.{10 + next(SOURCES)}")
    return profile


async def connect(profile: Profile) -> ClientSession:
    session = ClientSession(profile, FAST_SESSION)
    await session.connect()
    return session


class Pinned:
    """A certified client connection to one chosen supernode (the session's home)."""

    def __init__(self, profile: Profile) -> None:
        self.endpoint = Endpoint(
            static=profile.keys.static,
            certificate=profile.certificate,
            verifier=CertificateVerifier(profile.ls_key),
            accept=Expectation(role=Role.USER),
        )
        self.home: PeerConnection | None = None

    async def connect(self, node: Proc) -> Pinned:
        await self.endpoint.open_udp("127.0.0.1", 0)
        address = Address.parse(node.ready["listen"]).as_tuple()
        self.home = await self.endpoint.connect(address, Expectation(role=Role.SUPERNODE))
        return self

    async def request(self, message: Message, timeout: float | None = None) -> Message:
        assert self.home is not None
        return await self.home.request(message, timeout=timeout)

    async def close(self) -> None:
        self.endpoint.close()


Client = ClientSession | Pinned


def device_of(profile: Profile) -> bytes:
    body = profile.certificate_body()
    assert body is not None
    return body.device_id


def envelope(
    recipient: str, devices: list[bytes], ciphertext: bytes, sender: str | None = None
) -> SealedEnvelope:
    return SealedEnvelope(
        message_id=os.urandom(16),
        recipient=recipient,
        devices=tuple(devices),
        ciphertext=ciphertext,
        sender=sender,
        received_at=None,
        acked=(),
    )


async def store(session: Client, envelopes: list[SealedEnvelope]) -> list[str]:
    reply = await session.request(OfflineStoreRequest(envelopes=tuple(envelopes)))
    assert isinstance(reply, OfflineStoreReply)
    assert [r.message_id for r in reply.results] == [e.message_id for e in envelopes]
    return [r.outcome for r in reply.results]


async def fetch_all(session: Client, *, ack: bool) -> list[SealedEnvelope]:
    """Every page for this device, acking each page if ``ack``."""
    got: list[SealedEnvelope] = []
    cursor = 0
    while True:
        reply = await session.request(OfflineFetch(cursor=cursor, limit=200), timeout=15)
        assert isinstance(reply, OfflineFetchReply)
        got += reply.envelopes
        if ack and reply.envelopes:
            ids = tuple(e.message_id for e in reply.envelopes)
            acked = await session.request(OfflineAck(message_ids=ids), timeout=15)
            assert isinstance(acked, OfflineAckReply) and acked.acked == len(ids)
        if not reply.more:
            return got
        cursor = reply.next_cursor


def held(path: Path, recipient: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT count(*) FROM envelopes WHERE recipient = ?", (recipient,))
        return int(row.fetchone()[0])


def delivered(path: Path, recipient: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT count(*) FROM tombstones WHERE recipient = ?", (recipient,))
        return int(row.fetchone()[0])


async def until(check: Callable[[], bool], timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def test_a_sealed_message_is_stored_as_ciphertext_only(net: Net) -> None:
    n = next(NAMES)
    alice_profile, bob_profile = await register(net, f"alice{n}"), await register(net, f"bob{n}")
    alice = await connect(alice_profile)
    secret = b"the plaintext nobody but bob reads " + os.urandom(8).hex().encode()
    record = MessageRecord(
        sender_user=alice.user,
        sender_device=device_of(alice_profile),
        recipient_user=f"bob{n}",
        recipient_device=device_of(bob_profile),
        conversation_id=os.urandom(16),
        message_id=os.urandom(16),
        sent_at_ms=1,
        clock=1,
        kind=1,
        body=secret,
    )
    sealed = seal_envelope(record, alice_profile.keys.signing, bob_profile.keys.static.public)
    one = envelope(f"bob{n}", [device_of(bob_profile)], sealed)
    assert await store(alice, [one]) == ["stored"]
    paths = [net.database(i) for i in net.owners(f"bob{n}")]
    others = [net.database(i) for i in range(4) if i not in net.owners(f"bob{n}")]
    assert await until(lambda: all(held(p, f"bob{n}") == 1 for p in paths), 10)
    assert [held(p, f"bob{n}") for p in others] == [0]
    for path in paths:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT ciphertext, sender FROM envelopes WHERE recipient = ?", (f"bob{n}",)
            )
            assert rows.fetchall() == [(sealed, alice.user)]
        raw = b"".join(p.read_bytes() for p in path.parent.glob("offline.sqlite3*"))
        assert sealed in raw and secret not in raw
    await alice.close()


async def test_limits_are_refused_per_envelope_with_a_reason(net: Net) -> None:
    n = next(NAMES)
    alice = await connect(await register(net, f"alice{n}"))
    bob_profile = await register(net, f"bob{n}")
    devices = [device_of(bob_profile)]
    big = envelope(f"bob{n}", devices, os.urandom(33 * 1024))
    no_devices = envelope(f"bob{n}", [], b"x")
    fine = envelope(f"bob{n}", devices, b"fine")
    assert await store(alice, [big, no_devices, fine]) == ["too-large", "bad-envelope", "stored"]
    sent = 1
    outcomes: list[str] = []
    while sent < 2_501:  # the default share of one sender for one recipient is 2,500
        batch = [envelope(f"bob{n}", devices, b"m%d" % i) for i in range(min(250, 2_501 - sent))]
        outcomes += await store(alice, batch)
        sent += len(batch)
    assert outcomes.count("stored") == 2_499 and outcomes[-1] == "sender-share"
    carol = await connect(await register(net, f"carol{n}"))
    assert await store(carol, [envelope(f"bob{n}", devices, b"from carol")]) == ["stored"]
    await alice.close()
    await carol.close()


async def test_a_users_total_is_capped_whoever_sends(net: Net) -> None:
    n = next(NAMES)
    bob_profile = await register(net, f"bob{n}")
    devices = [device_of(bob_profile)]
    senders = [await connect(await register(net, f"s{i}x{n}")) for i in range(5)]
    for sender in senders[:4]:  # 4 x 2,500 fills the default 10,000 messages of one user
        for _ in range(5):
            batch = [envelope(f"bob{n}", devices, b"%d" % i) for i in range(500)]
            assert set(await store(sender, batch)) == {"stored"}
    late = envelope(f"bob{n}", devices, b"one too many")
    assert await store(senders[4], [late]) == ["quota"]
    owners = net.owners(f"bob{n}")
    assert await until(lambda: all(held(net.database(i), f"bob{n}") == 10_000 for i in owners), 20)
    metrics = [net.nodes[i].ready["metrics"] for i in owners]
    gauge = "hopline_supernode_offline_messages"
    assert await until(lambda: all(scrape_metrics(m)[gauge] >= 10_000 for m in metrics), 5)
    for sender in senders:
        await sender.close()


async def test_sender_comes_from_the_session_and_others_cannot_fetch(net: Net) -> None:
    n = next(NAMES)
    alice = await connect(await register(net, f"alice{n}"))
    bob_profile = await register(net, f"bob{n}")
    mallory = await connect(await register(net, f"mallory{n}"))
    forged = envelope(f"bob{n}", [device_of(bob_profile)], b"hi", sender=f"mallory{n}")
    assert await store(alice, [forged]) == ["stored"]
    assert await fetch_all(mallory, ack=False) == []  # fetch serves the session's user only
    reply = await mallory.request(OfflineAck(message_ids=(forged.message_id,)))
    assert isinstance(reply, OfflineAckReply) and reply.removed == 0
    with pytest.raises(RequestError):
        await mallory.request(OfflineAck(message_ids=(b"short",)))
    bob = await connect(bob_profile)
    got = await fetch_all(bob, ack=True)
    assert [(e.message_id, e.sender, e.ciphertext) for e in got] == [
        (forged.message_id, alice.user, b"hi")
    ]
    for one in (alice, mallory, bob):
        await one.close()


def name_not_owned_by(net: Net, node: int, prefix: str) -> str:
    """A fresh user name whose slot ``node`` does not own."""
    return next(
        name
        for name in (f"{prefix}{next(NAMES)}" for _ in range(100))
        if node not in net.owners(name)
    )


async def test_a_home_that_owns_nothing_puts_and_pulls_through_the_owners(net: Net) -> None:
    bob_name = name_not_owned_by(net, 0, "bob")
    alice_profile = await register(net, f"alice{next(NAMES)}")
    bob_profile = await register(net, bob_name)
    alice = await Pinned(alice_profile).connect(net.nodes[0])
    sent = [envelope(bob_name, [device_of(bob_profile)], os.urandom(400)) for _ in range(500)]
    for start in range(0, 500, 100):
        assert set(await store(alice, sent[start : start + 100])) == {"stored"}
    owners = net.owners(bob_name)
    assert await until(lambda: all(held(net.database(i), bob_name) == 500 for i in owners), 10)
    assert held(net.database(0), bob_name) == 0  # the home only passed them on
    bob = await Pinned(bob_profile).connect(net.nodes[0])
    got = await fetch_all(bob, ack=True)  # several pages, each from the same owner
    assert [e.message_id for e in got] == [e.message_id for e in sent]
    assert all(e.devices == () for e in got)  # devices do not learn each other's lists
    assert await until(lambda: all(held(net.database(i), bob_name) == 0 for i in owners), 10)
    await alice.close()
    await bob.close()


async def test_a_node_that_joins_gets_the_envelopes_of_the_slots_it_now_owns(net: Net) -> None:
    alice = await connect(await register(net, f"alice{next(NAMES)}"))
    bob_profile = await register(net, f"bob{next(NAMES)}")
    names = [f"carol{next(NAMES)}" for _ in range(40)]  # some of their slots move to the new node
    sent = {
        name: envelope(name, [device_of(bob_profile)], b"for " + name.encode()) for name in names
    }
    assert set(await store(alice, list(sent.values()))) == {"stored"}
    joined = len(net.nodes)
    args = [
        *("supernode", "--listen", "127.0.0.1:0"),
        *("--login-server", net.ls.ready["listen"], "--ls-key", net.ls.ready["public_key"]),
        *("--data-dir", str(net.workdir / f"sn{joined}")),
        *("--enroll-token", enrollment_token(net.workdir / "ls")),
        *("--metrics", "127.0.0.1:0", "--join", net.nodes[0].ready["listen"]),
    ]
    net.nodes.append(net.cluster.start(f"sn{joined}", args))
    wait_overlay(net.nodes)
    gained = [name for name in names if joined in net.owners(name)]
    assert gained, "the new node owns some of the slots"
    new_db = net.database(joined)
    assert await until(lambda: all(held(new_db, name) == 1 for name in gained), 15)
    await alice.close()


async def test_a_thousand_messages_survive_a_kill_and_reach_both_devices(net: Net) -> None:
    n = next(NAMES)
    alice = await connect(await register(net, f"alice{n}"))
    first, second = await register(net, f"bob{n}"), None
    second = await second_profile(net, f"bob{n}")
    devices = [device_of(first), device_of(second)]
    sent = [
        envelope(f"bob{n}", devices, b"message %04d " % i + os.urandom(24)) for i in range(1000)
    ]
    for start in range(0, 1000, 100):
        assert set(await store(alice, sent[start : start + 100])) == {"stored"}
    owners = net.owners(f"bob{n}")
    assert await until(lambda: all(held(net.database(i), f"bob{n}") == 1000 for i in owners), 20)
    victim = owners[0]
    await alice.close()
    net.nodes[victim].kill()  # SIGKILL: no leave, no handover
    survivors = [net.database(i) for i in owners if i != victim]
    outsider = next(i for i in range(len(net.nodes)) if i not in owners)
    bobs: list[Client] = [await Pinned(first).connect(net.nodes[outsider]), await connect(second)]
    for bob in bobs:  # one through a home that owns nothing, one through any live home
        got = await fetch_all(bob, ack=True)
        assert [e.message_id for e in got] == [e.message_id for e in sent]
        assert [e.ciphertext for e in got] == [e.ciphertext for e in sent]
        assert {e.sender for e in got} == {alice.user}
    assert await until(lambda: all(held(p, f"bob{n}") == 0 for p in survivors), 15)
    for bob in bobs:
        assert await fetch_all(bob, ack=False) == []
        await bob.close()
    # the killed owner comes back with its file: it must not hand the 1,000 out again
    restarted = restart(net, victim)  # its file still holds the 1,000 it stored
    bob = await Pinned(first).connect(restarted)
    assert await fetch_all(bob, ack=False) == []  # it learnt they were delivered
    assert held(net.database(victim), f"bob{n}") == 0
    assert delivered(net.database(victim), f"bob{n}") == 1000  # tombstones, not a lost file
    await bob.close()


def restart(net: Net, n: int) -> Proc:
    """Start supernode ``n`` again on its data dir, joined to a live node."""
    alive = next(p for p in net.nodes if p.alive())
    args = [
        *("supernode", "--listen", "127.0.0.1:0"),
        *("--login-server", net.ls.ready["listen"], "--ls-key", net.ls.ready["public_key"]),
        *("--data-dir", str(net.workdir / f"sn{n}")),
        *("--metrics", "127.0.0.1:0", "--join", alive.ready["listen"]),
    ]
    net.nodes[n] = net.cluster.start(f"sn{n}-again", args)
    wait_overlay(net.nodes)
    return net.nodes[n]
