"""The distributed directory across real supernode processes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hopline.client import account
from hopline.client.profile import Profile, parse_ls_key
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc, enrollment_token
from hopline.demo.walkthrough import members_seen
from hopline.identity import CertificateVerifier, Role
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import Endpoint, RequestError
from hopline.wire import Address
from hopline.wire.commands import (
    DeviceRecord,
    PresencePublish,
    PresencePublishReply,
    PresenceRecord,
)
from hopline.wire.commands import Endpoint as EndpointRecord
from hopline.wire.directory import DirectoryLookup, DirectoryLookupReply, LookupState

PASSWORD = "correct horse battery staple"


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[Cluster, Proc, list[Proc]]]:
    with Cluster(tmp_path / "logs") as cluster:
        ls = cluster.start(
            "ls", ["loginserver", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "ls")]
        )
        nodes: list[Proc] = []
        for n in range(5):
            args = [
                *("supernode", "--listen", "127.0.0.1:0"),
                *("--login-server", ls.ready["listen"], "--ls-key", ls.ready["public_key"]),
                *("--data-dir", str(tmp_path / f"sn{n}")),
                *("--enroll-token", enrollment_token(tmp_path / "ls")),
                *("--metrics", "127.0.0.1:0"),
            ]
            if nodes:
                args += ["--join", nodes[0].ready["listen"]]
            nodes.append(cluster.start(f"sn{n}", args))
        yield cluster, ls, nodes


async def logged_in(tmp_path: Path, ls: Proc, name: str) -> tuple[Profile, Endpoint]:
    profile = Profile.open(tmp_path / name)
    profile.pin_login_server(
        Address.parse(ls.ready["listen"]), parse_ls_key(ls.ready["public_key"])
    )
    await account.register(profile, name, PASSWORD)
    await account.login(profile, name, PASSWORD)
    endpoint = Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )
    return profile, endpoint


def presence(profile: Profile, user: str, sequence: int) -> PresenceRecord:
    certificate = profile.certificate
    assert certificate is not None
    now = int(time.time())
    device = DeviceRecord(
        device_id=profile.device_id,
        identity_key=profile.keys.static.public,
        certificate=certificate,
        endpoints=(EndpointRecord(address=Address.parse("192.0.2.44:5000")),),
    )
    return PresenceRecord(
        user=user, status=1, devices=(device,), last_seen=now, expires=now + 600, sequence=sequence
    )


def wait_overlay(nodes: list[Proc]) -> None:
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        if all(members_seen(p.ready["metrics"]) == len(nodes) for p in nodes):
            return
        time.sleep(0.2)
    raise AssertionError("overlay did not converge")


async def test_publish_then_look_up_in_one_hop_and_survive_an_owner_crash(
    network: tuple[Cluster, Proc, list[Proc]], tmp_path: Path
) -> None:
    _, ls, nodes = network
    wait_overlay(nodes)
    ids = {p.ready["node_id"]: p for p in nodes}
    owners = OwnershipMap(sorted(ids), 3).owners_of_user("alice")
    outsiders = [p for node_id, p in ids.items() if node_id not in owners]
    alice_profile, alice = await logged_in(tmp_path, ls, "alice")
    _, bob = await logged_in(tmp_path, ls, "bob")
    try:
        home = nodes[0]
        to_home = await alice.connect(
            Address.parse(home.ready["listen"]).as_tuple(), Expectation(role=Role.SUPERNODE)
        )
        reply = await to_home.request(PresencePublish(record=presence(alice_profile, "alice", 1)))
        assert isinstance(reply, PresencePublishReply) and reply.expires > time.time()

        # someone else's record is refused, whatever certificate it carries
        with pytest.raises(RequestError) as caught:
            await to_home.request(PresencePublish(record=presence(alice_profile, "bob", 1)))
        assert caught.value.code == 403

        bob_home = outsiders[0]  # not an owner: the lookup takes one overlay hop
        to_bob_home = await bob.connect(
            Address.parse(bob_home.ready["listen"]).as_tuple(), Expectation(role=Role.SUPERNODE)
        )
        found = await to_bob_home.request(DirectoryLookup(username="Alice"))
        assert isinstance(found, DirectoryLookupReply) and found.state == LookupState.ONLINE
        assert found.record is not None
        assert found.record.devices[0].endpoints[0].address == Address.parse("192.0.2.44:5000")

        ids[owners[0]].kill()  # the primary owner dies without a word
        started = time.monotonic()
        again = await to_bob_home.request(DirectoryLookup(username="alice"), timeout=20)
        assert isinstance(again, DirectoryLookupReply) and again.state == LookupState.ONLINE
        assert time.monotonic() - started < 10
        missing = await to_bob_home.request(DirectoryLookup(username="nobody"), timeout=20)
        assert isinstance(missing, DirectoryLookupReply)
        assert missing.state == LookupState.NOT_FOUND
    finally:
        alice.close()
        bob.close()
