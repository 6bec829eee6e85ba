"""A thousand offline messages, a supernode killed -9, one user on two devices.

Real processes on loopback: a login server, four supernodes (three own each
slot of the directory and of the offline store) and one ``hopline up`` daemon
per device, driven through their local API.

* alice sends 1,000 messages while both of bob's devices are offline; one
  supernode holding the backlog is killed with SIGKILL; both of bob's devices
  come back and each shows every message exactly once, in the order sent.
* carol sends 200 messages to dave, who is online but reachable only through
  supernode relays (the first half provably goes through them), and carol's
  home supernode is killed half way: dave, and carol's other device, show
  all of them, once, in order.

No supernode or relay may hold or forward a message's text: every message
carries a random marker, which must not appear in any supernode's data
directory (write-ahead logs included) or log, nor in any packet on the
loopback interface other than the local API's own HTTP (where it must
appear: the proof the capture sees the traffic). The capture needs root;
without it the wire check is left out with a warning.
"""

from __future__ import annotations

import secrets
import signal
import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from functools import partial

import pytest

from hopline.demo.cluster import Cluster, Proc
from hopline.testing.chat import ApiFailure, ChatNet, DaemonApi, LoopbackCapture, wait_until
from hopline.testing.network import scrape_metrics, start_network

BACKLOG = 1000
ONLINE_BURST = 200
RELAYED = 'hopline_supernode_relay_packets_total{direction="out"}'
BOB_DEVICES = ("bob", "bob-phone")  # two profiles, one user


@pytest.fixture(scope="module")
def chat_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatNet]:
    """A login server and four supernodes for the module."""
    workdir = tmp_path_factory.mktemp("offline-backlog")
    with Cluster(workdir / "logs", grace_s=5.0) as cluster:
        ls, nodes = start_network(cluster, workdir, supernodes=4)
        yield ChatNet(cluster, ls, nodes, workdir)


def device_up(net: ChatNet, profile: str, user: str, *extra: str, register: bool = False) -> Proc:
    """Start a daemon on ``profile``, register ``user`` if asked, log in, wait online."""
    proc = net.up(profile, *extra)
    if register:
        net.cli(profile, "register", user)
    net.cli(profile, "login", user)
    net.wait_online(profile)
    return proc


def device_up_again(net: ChatNet, profile: str) -> Proc:
    """Start the daemon of a profile that is logged in already; wait until online."""
    proc = net.up(profile)
    net.wait_online(profile, timeout=40)
    return proc


def device_down(proc: Proc) -> None:
    """Stop a daemon as a user does (SIGTERM: it leaves the network cleanly)."""
    proc.kill(signal.SIGTERM)
    assert proc.popen.wait(timeout=20) == 0


def numbered(marker: str, count: int) -> list[str]:
    """Message texts that carry the run's marker and their position."""
    return [f"backlog {marker} message {i:04d} of {count}" for i in range(count)]


def watching(marker: str) -> AbstractContextManager[LoopbackCapture | None]:
    """A capture of the loopback traffic looking for ``marker`` (None without root)."""
    try:
        return LoopbackCapture(marker.encode())
    except PermissionError:
        warnings.warn("not root: the packets on lo are not searched", stacklevel=2)
        return nullcontext()


def assert_only_the_api_carried_text(wire: LoopbackCapture | None, api_ports: set[int]) -> None:
    """The marker passed in the local API's HTTP and in no other packet."""
    if wire is None:
        return
    assert wire.drops == 0, f"{wire.drops} packets were not searched"
    assert wire.packets > 0 and wire.hits, "the capture saw the API requests"
    leaks = [flow for flow in wire.hits if flow.protocol != "tcp" or not flow.touches(api_ports)]
    assert leaks == [], f"message text outside the local API: {leaks}"


def assert_no_text_on_supernodes(net: ChatNet, marker: str) -> None:
    for n in range(len(net.nodes)):
        assert marker.encode() not in net.disk_bytes(n), f"plaintext on supernode {n}"


def assert_shown_once_in_order(api: DaemonApi, peer: str, sent: list[str], sender: str) -> None:
    """The conversation shows exactly ``sent``, in order, each once, from ``sender``."""
    docs = api.history(peer, len(sent))
    assert [doc["text"] for doc in docs] == sent
    assert len({doc["message_id"] for doc in docs}) == len(sent)
    assert {doc["sender"] for doc in docs} == {sender}
    clocks = [doc["clock"] for doc in docs]
    assert clocks == sorted(clocks) and len(set(clocks)) == len(clocks)


def shows_all(api: DaemonApi, peer: str, count: int) -> bool:
    """Whether the conversation with ``peer`` holds ``count`` messages yet."""
    return len(api.history(peer, count)) >= count


def knows(api: DaemonApi, user: str) -> bool:
    """Whether ``user`` is on the contact list (in any state)."""
    return user in {contact["user"] for contact in api.contacts()}


def two_devices_seen_then_offline(net: ChatNet) -> DaemonApi:
    """alice online; bob logged in on two devices that alice's daemon has sent to
    (a contact request), then both stopped. alice's API client."""
    device_up(net, "alice", "alice", register=True)
    bobs = [device_up(net, "bob", "bob", register=True), device_up(net, "bob-phone", "bob")]
    alice = net.api("alice")
    assert wait_until(lambda: alice.lookup("bob").get("devices") == 2, 20)
    alice.add_contact("bob", "alice here")
    for profile in BOB_DEVICES:
        with net.api(profile) as bob:
            assert wait_until(partial(knows, bob, "alice"), 20)
    for proc in bobs:
        device_down(proc)
    assert wait_until(lambda: alice.lookup("bob")["state"] == "offline", 10)
    return alice


def both_devices_show(net: ChatNet, sent: list[str]) -> set[int]:
    """Each of bob's devices shows ``sent`` from alice, once, in order; their API ports."""
    ports = set()
    for profile in BOB_DEVICES:
        with net.api(profile) as bob:
            ports.add(bob.port)
            assert wait_until(partial(shows_all, bob, "alice", len(sent)), 60)
            assert_shown_once_in_order(bob, "alice", sent, "alice")
    return ports


def test_a_thousand_offline_messages_survive_a_killed_owner_and_reach_both_devices(
    chat_net: ChatNet,
) -> None:
    net = chat_net
    alice = two_devices_seen_then_offline(net)
    marker = secrets.token_hex(8)
    sent = numbered(marker, BACKLOG)
    owners, envelopes = net.owners("bob"), 2 * BACKLOG  # one envelope per device
    with watching(marker) as wire:
        deliveries = [alice.send("bob", text)["delivery"] for text in sent]
        assert all(d == {"stored": 2} for d in deliveries), deliveries[:3]
        assert wait_until(lambda: all(net.held(i, "bob") == envelopes for i in owners), 30)
        assert [net.held(i, "bob") for i in range(len(net.nodes)) if i not in owners] == [0]

        victim = net.first_owner("bob", alice.status()["supernode"]["address"])
        net.nodes[victim].kill()  # SIGKILL the owner that took them first: no leave, no handover
        net.nodes[victim].popen.wait(timeout=10)
        for profile in BOB_DEVICES:
            device_up_again(net, profile)
        api_ports = {alice.port, *both_devices_show(net, sent)}
        survivors = [i for i in owners if i != victim]
        assert wait_until(lambda: all(net.held(i, "bob") == 0 for i in survivors), 30)  # acked
    assert net.held(victim, "bob") == envelopes  # the killed owner's file, as it was left
    assert_no_text_on_supernodes(net, marker)
    assert marker.encode() in net.profile_bytes("bob")  # where it is, the search finds it
    assert_only_the_api_carried_text(wire, api_ports)
    both_devices_show(net, sent)  # the fetches since brought nothing twice
    alice.close()


def send_retrying_while_rehoming(api: DaemonApi, peer: str, text: str) -> None:
    """Send ``text``; a daemon between supernodes refuses (503, ``not-online``) before
    doing anything, so the same text is sent again until the daemon takes it."""
    assert wait_until(lambda: _sent(api, peer, text), 40, every=0.2), text


def _sent(api: DaemonApi, peer: str, text: str) -> bool:
    try:
        api.send(peer, text)
    except ApiFailure as exc:
        if exc.status != 503:
            raise
        return False
    return True


def relayed_packets(net: ChatNet) -> float:
    """Datagrams the live supernodes' relays have sent on."""
    return sum(scrape_metrics(p.ready["metrics"])[RELAYED] for p in net.nodes if p.alive())


def test_a_relayed_online_burst_survives_the_senders_home_killed_midway(
    chat_net: ChatNet,
) -> None:
    net = chat_net
    device_up(net, "carol", "carol", register=True)
    device_up(net, "carol-laptop", "carol")
    device_up(net, "dave", "dave", "--relay-only", register=True)
    carol, laptop, dave = net.api("carol"), net.api("carol-laptop"), net.api("dave")
    home = carol.status()["supernode"]["address"]
    victim = net.index_of(home)
    marker = secrets.token_hex(8)
    sent = numbered(marker, ONLINE_BURST)
    half = ONLINE_BURST // 2
    relayed_before = relayed_packets(net)
    with watching(marker) as wire:
        for text in sent[:half]:
            send_retrying_while_rehoming(carol, "dave", text)
        assert wait_until(lambda: relayed_packets(net) - relayed_before >= half, 5)  # relayed
        net.nodes[victim].kill()  # SIGKILL, half way
        net.nodes[victim].popen.wait(timeout=10)
        for text in sent[half:]:
            send_retrying_while_rehoming(carol, "dave", text)
        assert wait_until(partial(shows_all, dave, "carol", ONLINE_BURST), 60)
        assert_shown_once_in_order(dave, "carol", sent, "carol")
        assert wait_until(partial(shows_all, laptop, "dave", ONLINE_BURST), 30)
        assert_shown_once_in_order(laptop, "dave", sent, "carol")  # the sender's other device
    assert carol.status()["supernode"]["address"] != home
    assert_no_text_on_supernodes(net, marker)
    assert_only_the_api_carried_text(wire, {carol.port, laptop.port, dave.port})
    for api in (carol, laptop, dave):
        api.close()
