"""A client session against real supernodes: race to a home, publish, re-home."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hopline.client.hostcache import HostCache, Source
from hopline.client.session import ClientSession, SessionConfig
from hopline.demo.cluster import Cluster, Proc
from hopline.testing.network import logged_in
from hopline.wire import Address
from hopline.wire.directory import LookupState

FAST = SessionConfig(keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=2.0)


async def test_presence_is_found_and_survives_the_home_dying(
    network: tuple[Cluster, Proc, list[Proc]], tmp_path: Path
) -> None:
    _, ls, nodes = network
    alice = ClientSession(await logged_in(tmp_path, ls, "alice"), FAST)
    bob = ClientSession(await logged_in(tmp_path, ls, "bob"), FAST)
    assert len(alice.profile.config["bootstrap"]) == len(nodes)  # from the login server
    keeper: asyncio.Task[None] | None = None
    try:
        await alice.connect()
        await bob.connect()
        found = await bob.lookup("alice")
        assert found.state == LookupState.ONLINE and found.record is not None
        assert found.record.devices[0].endpoints[0].address == alice.observed

        old_home = alice.home_address
        by_address = {Address.parse(p.ready["listen"]): p for p in nodes}
        keeper = asyncio.get_running_loop().create_task(alice.run())
        assert old_home is not None
        by_address[old_home].kill()  # kill -9 alice's home supernode
        started = time.monotonic()
        while alice.rehomes == 0 and time.monotonic() - started < 20:
            await asyncio.sleep(0.1)
        assert alice.rehomes == 1 and alice.home_address != old_home
        assert time.monotonic() - started < 10

        if bob.home_address == old_home:  # bob lost his home too
            await bob.rehome()
        again = await bob.lookup("alice")
        assert again.state == LookupState.ONLINE and again.record is not None
        assert again.record.sequence > found.record.sequence  # republished after re-homing
    finally:
        if keeper is not None:
            keeper.cancel()
        await alice.close()
        await bob.close()


async def test_a_stale_host_cache_falls_back_to_bootstrap(
    network: tuple[Cluster, Proc, list[Proc]], tmp_path: Path
) -> None:
    _, ls, _ = network
    profile = await logged_in(tmp_path, ls, "carol")
    cache = HostCache.in_profile(profile.path)
    dead = [Address.parse(f"127.0.0.1:{port}") for port in (9, 13, 17, 19)]
    cache.merge(dead, Source.OVERLAY, time.time())
    for address in dead:
        cache.record_success(address, 0.001, time.time() - 60)  # once good, now gone
    cache.save()
    session = ClientSession(profile, FAST)
    try:
        await session.connect()
        bootstrap = [Address.parse(a) for a in profile.config["bootstrap"]]
        assert session.home_address in bootstrap  # the cache was all dead
        assert session.cache.get(session.home_address) is not None  # and now knows a live one
    finally:
        await session.close()
