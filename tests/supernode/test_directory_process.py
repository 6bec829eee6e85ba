"""The distributed directory across real supernode processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hopline.client.profile import Profile
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc
from hopline.identity import CertificateVerifier, Role
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import Endpoint, RequestError
from hopline.testing.network import logged_in, presence_record
from hopline.wire import Address
from hopline.wire.commands import (
    PresencePublish,
    PresencePublishReply,
)
from hopline.wire.directory import DirectoryLookup, DirectoryLookupReply, LookupState

PASSWORD = "correct horse battery staple"


def endpoint_for(profile: Profile) -> Endpoint:
    return Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )


async def test_publish_then_look_up_in_one_hop_and_survive_an_owner_crash(
    network: tuple[Cluster, Proc, list[Proc]], tmp_path: Path
) -> None:
    _, ls, nodes = network
    ids = {p.ready["node_id"]: p for p in nodes}
    owners = OwnershipMap(sorted(ids), 3).owners_of_user("alice")
    outsiders = [p for node_id, p in ids.items() if node_id not in owners]
    alice_profile = await logged_in(tmp_path, ls, "alice")
    alice = endpoint_for(alice_profile)
    bob = endpoint_for(await logged_in(tmp_path, ls, "bob"))
    try:
        home = nodes[0]
        to_home = await alice.connect(
            Address.parse(home.ready["listen"]).as_tuple(), Expectation(role=Role.SUPERNODE)
        )
        reply = await to_home.request(
            PresencePublish(record=presence_record(alice_profile, "alice", 1))
        )
        assert isinstance(reply, PresencePublishReply) and reply.expires > time.time()

        # someone else's record is refused, whatever certificate it carries
        with pytest.raises(RequestError) as caught:
            await to_home.request(PresencePublish(record=presence_record(alice_profile, "bob", 1)))
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
