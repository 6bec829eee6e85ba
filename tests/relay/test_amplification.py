"""No amplification: a real supernode never answers a stranger with more than it got.

Against a real supernode process (and its login server), from plain UDP
sockets that hold no Hopline identity:

* a relayed port answers nobody: datagrams from addresses without a
  permission produce nothing on the sender's socket, never reach the
  allocation's owner, and are counted (``relay:no-permission``);
* the supernode's main port answers unauthenticated datagrams (garbage,
  truncated or malformed handshake inits, a valid init from an anonymous
  initiator) with nothing at all, or with handshake replies no larger than
  the 1200-byte init each one answers; until the initiator proves its
  address, the responder's retransmissions stay within the bytes it
  received, so one spoofed init gets at most 1,200 bytes back in all (the
  test watches long enough to see the retransmissions stop);
* STUN is the one exception, by the protocol: a minimal 20-byte Binding
  request gets a larger Binding success response. The test measures that
  response and checks the per-source rate limit that bounds it.

The per-user allocation quota and an expired allocation's port closing are
covered in ``test_relay_process.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.connection import Connection, Expectation
from hopline.connection.handshake import INIT, INIT_SIZE
from hopline.crypto.noise import DHKeyPair
from hopline.demo.cluster import Cluster, Proc
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.testing.network import logged_in, scrape_metrics, start_network
from hopline.wire import Address
from hopline.wire.relay import RelayAllocate, RelayAllocateReply, RelayPermit

QUIET_S = 0.5  # how long "nothing arrives" is watched for
DROPS = 'hopline_supernode_dropped_total{reason="relay:no-permission"}'
HANDSHAKE_WATCH_S = 3.0  # an init's answer, its retransmissions, and their end
STUN_COOKIE = 0x2112A442


@pytest.fixture
def supernode(tmp_path: Path) -> Iterator[tuple[Proc, Proc]]:
    """A login server and one supernode."""
    with Cluster(tmp_path / "logs") as cluster:
        ls, nodes = start_network(cluster, tmp_path, supernodes=1)
        yield ls, nodes[0]


def stranger(host: str = "127.0.0.1") -> socket.socket:
    """A plain UDP socket with no Hopline identity."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


def replies(sock: socket.socket, watch: float = QUIET_S) -> list[bytes]:
    """Everything ``sock`` receives within ``watch`` seconds."""
    got: list[bytes] = []
    deadline = time.monotonic() + watch
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(65535))
        except TimeoutError:
            break
    return got


async def replies_async(sock: socket.socket, watch: float = QUIET_S) -> list[bytes]:
    """:func:`replies` off the event loop (the supernode's client may need it)."""
    return await asyncio.get_running_loop().run_in_executor(None, replies, sock, watch)


def valid_init() -> bytes:
    """A well-formed handshake init from an anonymous initiator (no certificate)."""
    now = time.time()
    core = Connection(
        initiator=True,
        static=DHKeyPair.generate(),
        certificate=None,
        verifier=None,
        expect=Expectation(role=Role.SUPERNODE),
        now=now,
    )
    (init,) = core.datagrams_to_send(now)
    return init


def binding_request() -> tuple[bytes, bytes]:
    """A minimal STUN Binding request (20 bytes, no attributes) and its transaction id."""
    transaction = os.urandom(12)
    return struct.pack("!HHI", 0x0001, 0, STUN_COOKIE) + transaction, transaction


async def allocation(
    profile_dir: Path, ls: Proc, sn: Proc
) -> tuple[Endpoint, PeerConnection, int, Address]:
    """A logged-in user's connection and one fresh allocation: (endpoint, pc, id, relayed)."""
    profile = await logged_in(profile_dir, ls, "alice")
    endpoint = Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )
    address = Address.parse(sn.ready["listen"]).as_tuple()
    pc = await endpoint.connect(address, Expectation(role=Role.SUPERNODE))
    reply = await pc.request(RelayAllocate())
    assert isinstance(reply, RelayAllocateReply)
    return endpoint, pc, reply.relay_id, reply.relayed


async def test_relayed_port_answers_no_sender_without_a_permission(
    supernode: tuple[Proc, Proc], tmp_path: Path
) -> None:
    ls, sn = supernode
    endpoint, pc, relay_id, relayed = await allocation(tmp_path, ls, sn)
    # a permission for another address (127.0.0.2) lets nothing in from 127.0.0.1
    await pc.request(RelayPermit(relay_id=relay_id, peers=(Address.parse("127.0.0.2:9"),)))
    sock = stranger("127.0.0.1")
    try:
        sizes = [1, 20, 200, 1200, 1500, 4000]  # the last two are over the payload limit too
        for size in sizes:
            sock.sendto(os.urandom(size), relayed.as_tuple())
        assert await replies_async(sock) == []  # nothing back to the sender
        assert pc.media.empty()  # nothing to the owner
        await asyncio.sleep(1.2)  # one metrics snapshot
        assert scrape_metrics(sn.ready["metrics"])[DROPS] == len(sizes)
    finally:
        sock.close()
        endpoint.close()


def garbage_probes() -> dict[str, bytes]:
    """Unauthenticated datagrams that must get no answer at all."""
    init = valid_init()
    bad_length = bytes([INIT]) + b"\xff\xff" + os.urandom(INIT_SIZE - 3)
    return {
        "one byte": b"\x00",
        "20 random bytes": os.urandom(20),
        "200 random bytes": b"\x17" + os.urandom(199),
        "1200 random bytes": b"\x17" + os.urandom(INIT_SIZE - 1),
        "init truncated to 600": init[:600],
        "init truncated to 1199": init[: INIT_SIZE - 1],
        "init with a bad length": bad_length,
        "STUN-looking header, wrong length": struct.pack("!HHI", 0x0001, 8, STUN_COOKIE)
        + b"x" * 12,
    }


def test_main_port_answers_garbage_with_nothing(supernode: tuple[Proc, Proc]) -> None:
    _, sn = supernode
    target = Address.parse(sn.ready["listen"]).as_tuple()
    before = sum(v for k, v in scrape_metrics(sn.ready["metrics"]).items() if "dropped_total" in k)
    answered = {}
    for name, probe in garbage_probes().items():
        sock = stranger()
        try:
            sock.sendto(probe, target)
            answered[name] = [len(r) for r in replies(sock)]
        finally:
            sock.close()
    assert answered == {name: [] for name in answered}
    time.sleep(1.2)  # one metrics snapshot
    after = sum(v for k, v in scrape_metrics(sn.ready["metrics"]).items() if "dropped_total" in k)
    assert after - before >= len(answered)  # every probe was counted as a drop


def test_handshake_answers_are_never_larger_than_the_init(supernode: tuple[Proc, Proc]) -> None:
    """A valid init from nobody in particular gets the responder's message 2,
    and its retransmissions, each no larger than the init."""
    _, sn = supernode
    target = Address.parse(sn.ready["listen"]).as_tuple()
    init = valid_init()
    assert len(init) == INIT_SIZE
    sock = stranger()
    try:
        sock.sendto(init, target)
        got = replies(sock, HANDSHAKE_WATCH_S)
    finally:
        sock.close()
    assert got, "the supernode answers a well-formed init"
    assert all(len(reply) <= len(init) for reply in got), [len(r) for r in got]
    assert sum(map(len, got)) <= len(init)  # retransmissions included
    assert got[0][0] != INIT  # an answer, not an init of its own
    print(f"init {len(init)} bytes -> {len(got)} replies of {[len(r) for r in got]} bytes")


def test_stun_answers_are_measured_and_rate_limited(supernode: tuple[Proc, Proc]) -> None:
    """STUN answers a 20-byte request with a larger response (reported here);
    the per-source bucket bounds how many a burst of requests gets."""
    _, sn = supernode
    target = Address.parse(sn.ready["listen"]).as_tuple()
    sock = stranger()
    try:
        request, transaction = binding_request()
        sock.sendto(request, target)
        got = replies(sock)
        assert len(got) == 1, "the supernode answers STUN Binding requests"
        response = got[0]
        kind, length, cookie = struct.unpack("!HHI", response[:8])
        assert (kind, cookie, response[8:20]) == (0x0101, STUN_COOKIE, transaction)
        assert length == len(response) - 20
        print(f"STUN: request {len(request)} bytes -> response {len(response)} bytes")

        burst = 200
        for _ in range(burst):
            sock.sendto(binding_request()[0], target)
        answered = replies(sock, 1.0)
    finally:
        sock.close()
    assert all(len(r) == len(response) for r in answered)
    assert 0 < len(answered) < burst  # the rest were refused by the per-source rate limit
    print(f"STUN burst: {burst} requests -> {len(answered)} responses")
