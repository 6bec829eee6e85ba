"""A session notices its network changing: real login server and supernodes on loopback.

The keep-alive is set far longer than each test, so only the route check can
make the session re-home in time. The route the kernel would take is what
:func:`~hopline.client.session.local_route` reports; here the session is
given a route function the test changes, as a host's address or link would.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
from collections.abc import Iterator

import pytest

from hopline.client.session import ClientSession, SessionConfig, local_route
from hopline.testing.network import LoopbackNet, logged_in, loopback_net, until
from hopline.wire import Address

SLOW_KEEPALIVE = SessionConfig(keepalive_s=60.0, connect_timeout_s=2.0, route_check_s=0.05)
NAMES = itertools.count(1)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoopbackNet]:
    """A login server and two supernodes for the tests of this module."""
    with loopback_net(tmp_path_factory.mktemp("netchange"), supernodes=2) as running:
        yield running


class Route:
    """The local address towards any destination, as the test sets it (None: no route)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self.asked = 0

    def __call__(self, destination: Address) -> str | None:
        self.asked += 1
        return self.address


async def online(net: LoopbackNet, route: Route) -> tuple[ClientSession, asyncio.Task[None]]:
    """A logged-in session with a home, kept up by ``run()``."""
    name = f"roamer{next(NAMES)}"
    profile = await logged_in(net.workdir, net.ls, name, bind=f"127.0.0.{40 + next(NAMES)}")
    session = ClientSession(profile, SLOW_KEEPALIVE)
    session.route = route
    await session.connect()
    return session, asyncio.get_running_loop().create_task(session.run())


async def stop(session: ClientSession, keeper: asyncio.Task[None]) -> None:
    keeper.cancel()
    await asyncio.gather(keeper, return_exceptions=True)
    await session.close()


def test_local_route_names_the_source_address_and_none_without_a_route() -> None:
    assert local_route(Address.parse("127.0.0.1:9")) == "127.0.0.1"
    assert local_route(Address.parse("127.0.0.1:0")) == "127.0.0.1"  # port 0 is allowed
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return  # no IPv6 loopback here
    assert local_route(Address.parse("[::1]:9")) == "::1"


async def test_a_new_local_address_rehomes_at_once_to_another_supernode(
    net: LoopbackNet,
) -> None:
    route = Route("192.0.2.10")
    session, keeper = await online(net, route)
    heard: list[str | None] = []
    session.home_listeners.append(lambda: heard.append(session.local))
    try:
        first = session.home_address
        assert session.local == "192.0.2.10" and session.route_change() is None
        route.address = "192.0.2.77"  # the host's address changed
        assert session.route_change() == "local address 192.0.2.10 -> 192.0.2.77"
        assert await until(lambda: session.rehomes == 1 and session.connected, timeout=10)
        assert session.home_address != first  # the old home may hold our stale connection
        assert session.local == "192.0.2.77" and heard == ["192.0.2.77"]
        await asyncio.sleep(0.3)
        assert session.rehomes == 1  # nothing changed since: no more re-homing
    finally:
        await stop(session, keeper)


async def test_without_a_route_it_waits_then_comes_back(net: LoopbackNet) -> None:
    route = Route("192.0.2.10")
    session, keeper = await online(net, route)
    try:
        route.address = None  # the link went down
        assert await until(lambda: not session.connected, timeout=5)
        asked = route.asked
        await asyncio.sleep(0.5)
        assert session.home is None and session.rehomes == 0  # waiting, not racing
        assert route.asked > asked  # it keeps looking for a route
        route.address = "192.0.2.10"  # the link is back
        assert await until(lambda: session.connected and session.rehomes == 1, timeout=10)
        assert session.observed is not None
    finally:
        await stop(session, keeper)


async def test_with_only_the_old_home_answering_it_goes_back_there(net: LoopbackNet) -> None:
    """(Last in the module: it stops a supernode.)"""
    route = Route("192.0.2.10")
    session, keeper = await online(net, route)
    try:
        home = session.home_address
        other = next(node for node in net.nodes if node.ready["listen"] != str(home))
        other.kill(signal.SIGKILL)
        route.address = "192.0.2.11"
        assert await until(lambda: session.rehomes == 1 and session.connected, timeout=30)
        assert session.home_address == home
    finally:
        await stop(session, keeper)
