"""A supernode stopped with SIGTERM hands its records over before it exits (real processes)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hopline.client.profile import Profile
from hopline.connection import Expectation
from hopline.demo.cluster import Proc
from hopline.identity import CertificateVerifier, Role
from hopline.overlay.slots import OwnershipMap
from hopline.runtime.endpoint import Endpoint
from hopline.testing.network import logged_in, presence_record
from hopline.wire import Address
from hopline.wire.commands import (
    PresencePublish,
    PresencePublishReply,
)
from hopline.wire.directory import DirectoryLookup, DirectoryLookupReply, LookupState

ALICE_AT = Address.parse("192.0.2.44:5000")
Scrape = Callable[[str], dict[str, float]]
WaitFor = Callable[[Callable[[], bool], float], bool]


def endpoint_for(profile: Profile) -> Endpoint:
    return Endpoint(
        static=profile.keys.static,
        certificate=profile.certificate,
        verifier=CertificateVerifier(profile.ls_key),
    )


async def publish_once(profile: Profile, user: str, home: Proc) -> None:
    """Publish ``user``'s record through ``home``, then close: nobody republishes it."""
    client = endpoint_for(profile)
    try:
        pc = await client.connect(
            Address.parse(home.ready["listen"]).as_tuple(), Expectation(role=Role.SUPERNODE)
        )
        reply = await pc.request(PresencePublish(record=presence_record(profile, user)))
        assert isinstance(reply, PresencePublishReply)
    finally:
        client.close()


async def look_up(profile: Profile, user: str, via: Proc) -> DirectoryLookupReply:
    client = endpoint_for(profile)
    try:
        pc = await client.connect(
            Address.parse(via.ready["listen"]).as_tuple(), Expectation(role=Role.SUPERNODE)
        )
        reply = await pc.request(DirectoryLookup(username=user), timeout=10)
        assert isinstance(reply, DirectoryLookupReply)
        return reply
    finally:
        client.close()


def stop_gracefully(proc: Proc) -> int:
    """SIGTERM, then wait for the exit status."""
    proc.kill(signal.SIGTERM)
    return int(proc.popen.wait(20))


def handover_line(proc: Proc, timeout: float = 5.0) -> dict[str, Any]:
    """The JSON log line in which ``proc`` reported its handover."""
    deadline = time.monotonic() + timeout
    while True:
        text = proc.log_path.read_text() if proc.log_path.exists() else ""
        for line in text.splitlines():
            if line.startswith("{") and '"handover' in line:
                document: dict[str, Any] = json.loads(line)
                return document
        assert time.monotonic() < deadline, f"no handover line in {proc.log_path}:\n{text}"
        time.sleep(0.1)


async def test_a_record_only_the_leaving_node_held_is_found_after_it_exits(
    start_overlay: Callable[..., Any], tmp_path: Path
) -> None:
    _, ls, nodes = start_overlay(4, ["--replication", "1", "--log-format", "json"])
    by_id = {p.ready["node_id"]: p for p in nodes}
    leaver = by_id[OwnershipMap(sorted(by_id), 1).owners_of_user("alice")[0]]
    remaining = [p for p in nodes if p is not leaver]
    after = OwnershipMap([p.ready["node_id"] for p in remaining], 1)
    heir = by_id[after.owners_of_user("alice")[0]]
    home, asker = [p for p in remaining if p is not heir][:2]

    alice = await logged_in(tmp_path, ls, "alice")
    bob = await logged_in(tmp_path, ls, "bob")
    await publish_once(alice, "alice", home)  # replication 1: only the leaver keeps it
    before = await look_up(bob, "alice", asker)
    assert before.state == LookupState.ONLINE

    assert stop_gracefully(leaver) == 0
    found = await look_up(bob, "alice", asker)  # at once: no republish, no waiting
    assert found.state == LookupState.ONLINE and found.record is not None
    assert found.record.devices[0].endpoints[0].address == ALICE_AT
    assert (await look_up(bob, "alice", heir)).state == LookupState.ONLINE  # the heir holds it

    line = handover_line(leaver)
    assert line["level"] == "info" and line["logger"] == "hopline.supernode"
    assert (line["records"], line["nodes"], line["acknowledged"]) == (1, 1, 1)
    assert line["failed_nodes"] == [] and line["timed_out"] is False


async def test_after_a_graceful_leave_every_record_has_all_its_replicas(
    start_overlay: Callable[..., Any], tmp_path: Path, scrape: Scrape, wait_for: WaitFor
) -> None:
    _, ls, nodes = start_overlay(5, ["--log-format", "json"])
    names = [f"user{i:02d}" for i in range(12)]
    gate = asyncio.Semaphore(4)

    async def user(i: int, name: str) -> Profile:
        async with gate:  # registrations are throttled per source address
            return await logged_in(tmp_path, ls, name, bind=f"127.0.0.{2 + i // 6}")

    profiles = await asyncio.gather(*(user(i, n) for i, n in enumerate(names)))
    for i, (name, profile) in enumerate(zip(names, profiles, strict=True)):
        await publish_once(profile, name, nodes[i % len(nodes)])

    def records_by_node(procs: list[Proc]) -> dict[str, int]:
        return {
            p.ready["node_id"]: int(scrape(p.ready["metrics"])["hopline_supernode_records"])
            for p in procs
        }

    def expected(procs: list[Proc]) -> dict[str, int]:
        owners = OwnershipMap([p.ready["node_id"] for p in procs], 3)
        counts = dict.fromkeys((p.ready["node_id"] for p in procs), 0)
        for name in names:
            for node in owners.owners_of_user(name):
                counts[node] += 1
        return counts

    assert wait_for(lambda: records_by_node(nodes) == expected(nodes), 10), records_by_node(nodes)
    leaver = max(nodes, key=lambda p: expected(nodes)[p.ready["node_id"]])
    held = expected(nodes)[leaver.ready["node_id"]]
    remaining = [p for p in nodes if p is not leaver]

    assert stop_gracefully(leaver) == 0
    assert wait_for(lambda: records_by_node(remaining) == expected(remaining), 10), (
        records_by_node(remaining),
        expected(remaining),
    )
    assert sum(records_by_node(remaining).values()) == 3 * len(names)
    asker = remaining[0]
    for name in names:
        assert (await look_up(profiles[0], name, asker)).state == LookupState.ONLINE

    line = handover_line(leaver)
    assert line["records"] == held > 0 and line["acknowledged"] == held
    assert 1 <= line["nodes"] <= len(remaining)
