"""Five supernodes, fifty clients: everyone finds everyone, through a supernode crash."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from hopline.client.session import ClientSession, SessionConfig
from hopline.demo.cluster import Cluster, Proc
from hopline.testing.network import logged_in
from hopline.wire import Address
from hopline.wire.directory import LookupState

CLIENTS = 50
FAST = SessionConfig(keepalive_s=0.5, ping_timeout_s=1.0, connect_timeout_s=2.0)


async def everyone_finds_everyone(sessions: list[ClientSession]) -> int:
    """Every session looks up every other user; returns how many were found online."""
    names = [s.user for s in sessions]

    async def lookups(session: ClientSession) -> int:
        found = 0
        for name in names:
            if name != session.user:
                reply = await session.lookup(name)
                found += reply.state == LookupState.ONLINE
        return found

    return sum(await asyncio.gather(*(lookups(s) for s in sessions)))


async def test_fifty_clients_find_each_other_and_survive_a_supernode_crash(
    network: tuple[Cluster, Proc, list[Proc]], tmp_path: Path
) -> None:
    _, ls, nodes = network
    gate = asyncio.Semaphore(4)

    async def user(i: int) -> ClientSession:
        async with gate:  # registrations spread over source addresses (throttled per address)
            profile = await logged_in(tmp_path, ls, f"user{i:02d}", bind=f"127.0.0.{2 + i // 8}")
        return ClientSession(profile, FAST)

    sessions = await asyncio.gather(*(user(i) for i in range(CLIENTS)))
    keepers: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(s.connect() for s in sessions))
        assert await everyone_finds_everyone(sessions) == CLIENTS * (CLIENTS - 1)

        keepers = [asyncio.get_running_loop().create_task(s.run()) for s in sessions]
        by_address = {Address.parse(p.ready["listen"]): p for p in nodes}
        homes = [s.home_address for s in sessions]
        busiest = max(set(homes), key=homes.count)  # the supernode with the most clients
        victim = by_address[busiest]  # type: ignore[index]
        homed_there = [s for s in sessions if s.home_address == busiest]
        assert homed_there
        victim.kill()  # kill -9 one supernode
        started = time.monotonic()
        while any(s.rehomes == 0 for s in homed_there) and time.monotonic() - started < 30:
            await asyncio.sleep(0.2)
        assert all(s.rehomes >= 1 for s in homed_there), "its clients re-home by themselves"
        assert await everyone_finds_everyone(sessions) == CLIENTS * (CLIENTS - 1)
        assert time.monotonic() - started < 60
    finally:
        for keeper in keepers:
            keeper.cancel()
        await asyncio.gather(*(s.close() for s in sessions))
