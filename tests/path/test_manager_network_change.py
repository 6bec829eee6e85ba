"""Paths come back at once when they die, not at the next keep-alive (real loopback network).

Keep-alives here are far longer than each test (30 s), so a path that is
established again within seconds was woken by what these tests check:

* the connection closing under the path wakes its watcher;
* a connection that silently stops answering is dropped (and the path
  established again) when a check finds it dead, and a ``connect()`` meanwhile
  waits for that path instead of starting a second one to the same peer;
* a re-homing of the session (its network changed) checks every path.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import pytest

from hopline.client.session import ClientSession, SessionConfig
from hopline.path.checks import CheckConfig
from hopline.path.manager import PathConfig, PathManager
from hopline.path.peer import PeerPath
from hopline.testing.network import LoopbackNet, logged_in, loopback_net, until
from hopline.wire.commands import Ping, Pong

SLOW_SESSION = SessionConfig(keepalive_s=30.0, ping_timeout_s=1.0, connect_timeout_s=2.0)
SLOW_PATHS = PathConfig(
    checks=CheckConfig(direct_wait_s=0.3, timeout_s=8.0),
    keepalive_s=30.0,
    ping_timeout_s=1.0,
    connect_timeout_s=5.0,
)
NAMES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    """A login server and two supernodes for the tests of this module."""
    with loopback_net(tmp_path_factory.mktemp("pathchange"), supernodes=2) as running:
        yield running


class Side:
    """One logged-in user with a path manager, its session kept up."""

    def __init__(self, session: ClientSession, paths: PathManager) -> None:
        self.session, self.paths = session, paths
        self.keeper = asyncio.get_running_loop().create_task(session.run())

    async def stop(self) -> None:
        self.keeper.cancel()
        await asyncio.gather(self.keeper, return_exceptions=True)
        await self.paths.close()
        await self.session.close()


async def side(net: LoopbackNet, name: str) -> Side:
    profile = await logged_in(net.workdir, net.ls, name, bind=f"127.0.0.{60 + next(NAMES)}")
    session = ClientSession(profile, SLOW_SESSION)
    await session.connect()
    paths = PathManager(session, SLOW_PATHS)
    await paths.start()
    return Side(session, paths)


async def connected(net: LoopbackNet) -> tuple[Side, Side, PeerPath, PeerPath]:
    """A caller and a callee with a direct path between them (both ends)."""
    n = next(NAMES)
    caller, callee = await side(net, f"mover{n}"), await side(net, f"stayer{n}")
    outgoing = await caller.paths.connect(callee.session.user, timeout=15)
    incoming = await asyncio.wait_for(callee.paths.accept(), 15)
    assert outgoing.kind == "direct"
    return caller, callee, outgoing, incoming


async def answers(path: PeerPath) -> bool:
    pong = await path.request(Ping(nonce=5), timeout=5)
    return isinstance(pong, Pong) and pong.nonce == 5


def silence(callee: Side, incoming: PeerPath) -> None:
    """The callee forgets the connection without a word: what the caller sends on it
    from now on is dropped as from an unknown peer (as after the caller's NAT changed)."""
    pc = incoming.connection
    assert pc is not None
    callee.session.endpoint.forget(pc)


async def test_a_closed_connection_is_established_again_at_once(net: LoopbackNet) -> None:
    caller, callee, outgoing, incoming = await connected(net)
    try:
        first = outgoing.connection
        assert incoming.connection is not None
        incoming.connection.close()  # the caller hears the close
        assert await until(lambda: outgoing.live and outgoing.connection is not first, 10)
        assert [c.reason for c in outgoing.changes] == ["established", "reestablished"]
        assert await answers(outgoing)
    finally:
        await caller.stop()
        await callee.stop()


async def test_a_silent_connection_is_replaced_and_connect_waits_for_it(
    net: LoopbackNet,
) -> None:
    caller, callee, outgoing, incoming = await connected(net)
    try:
        first = outgoing.connection
        silence(callee, incoming)
        caller.paths.check_soon(outgoing)
        assert await until(lambda: not outgoing.live, 5)  # the dead one no longer counts
        again = await caller.paths.connect(callee.session.user, timeout=15)
        assert again is outgoing and caller.paths.paths == [outgoing]  # no second path
        assert outgoing.connection is not first and await answers(outgoing)
    finally:
        await caller.stop()
        await callee.stop()


async def test_a_rehoming_checks_every_path(net: LoopbackNet) -> None:
    caller, callee, outgoing, incoming = await connected(net)
    try:
        first = outgoing.connection
        silence(callee, incoming)
        await caller.session.rehome()  # as after the caller's address changed
        assert await until(lambda: outgoing.live and outgoing.connection is not first, 10)
        assert await answers(outgoing)
        assert caller.paths.paths == [outgoing]
    finally:
        await caller.stop()
        await callee.stop()
