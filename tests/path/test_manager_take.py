"""Both peers connect at once: the controlled side takes only connections the peer opened.

Each side then runs two attempts on one path: its own (controlling) and the
peer's (controlled). Our own attempt's connection is established a few loop
turns before that attempt installs it; the peer's attempt, polling for the
peer's connection meanwhile, must not take it: installed there, our attempt's
install would then replace (end) the peer's attempt, and the peer's checks,
still running against it, would go unanswered until they fail ("no pair
succeeded").

The second connection then replaces the first (one address, one connection), and
the path is lost for a moment on both sides: our attempt to establish it again
must not open yet another connection once the peer's brought it back, which
would replace (close) that one too and lose what is in flight on it (datagrams).
Stand-ins replace the session and its connections; no socket.
"""

from __future__ import annotations

import asyncio
import os
import time
import types
from dataclasses import dataclass, field
from typing import Any

from hopline.connection.events import PeerIdentity
from hopline.path.candidates import UDP_BASE, Candidate, CandidateKind
from hopline.path.manager import POLL_S, PathManager, _Attempt
from hopline.path.peer import PeerPath
from hopline.wire import Address, decode
from hopline.wire.commands import Forward
from hopline.wire.path import PathCancel

PEER_STATIC = b"\x07" * 32
PEER_ADDRESS = ("127.0.0.1", 40000)


@dataclass(eq=False)
class _Core:
    initiator: bool
    peer: PeerIdentity

    def set_datagram_size(self, size: int) -> None:
        """The manager sizes a taken connection's datagrams; nothing to size here."""


@dataclass(eq=False)
class _Conn:
    """What the manager reads of an established PeerConnection."""

    initiator: bool
    address: tuple[str, int] = PEER_ADDRESS
    core: _Core = field(init=False)
    established: asyncio.Future[PeerIdentity] = field(init=False)
    closed: asyncio.Future[str] = field(init=False)
    incoming: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    media: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def __post_init__(self) -> None:
        self.core = _Core(self.initiator, PeerIdentity(PEER_STATIC, None))
        loop = asyncio.get_running_loop()
        self.established, self.closed = loop.create_future(), loop.create_future()
        self.established.set_result(self.core.peer)

    @property
    def peer(self) -> PeerIdentity:
        return self.core.peer

    def close(self) -> None:
        if not self.closed.done():
            self.closed.set_result("closed")


def _manager(*connections: _Conn) -> PathManager:
    endpoint = types.SimpleNamespace(
        connections={("udp", pc.address): pc for pc in connections}, local_address=None
    )
    session = types.SimpleNamespace(endpoint=endpoint, user="alice")
    return PathManager(session)  # type: ignore[arg-type]


def _attempt(manager: PathManager, path: PeerPath, *, controlling: bool) -> _Attempt:
    attempt = _Attempt(
        path_id=os.urandom(16),
        path=path,
        controlling=controlling,
        local_ufrag="u",
        key=b"k" * 32,
        started=0.0,
        done=asyncio.get_running_loop().create_future(),
    )
    manager._attempts[attempt.path_id] = attempt
    return attempt


async def _stop(manager: PathManager) -> None:
    for task in list(manager._tasks):
        task.cancel()
    await asyncio.gather(*manager._tasks, return_exceptions=True)


async def test_the_peers_attempt_does_not_take_our_own_connection() -> None:
    ours_pc = _Conn(initiator=True)  # established, not installed yet
    manager = _manager(ours_pc)
    path = PeerPath("bob", b"d" * 16, PEER_STATIC, initiator=True)
    ours = _attempt(manager, path, controlling=True)
    theirs = _attempt(manager, path, controlling=False)
    taking = asyncio.ensure_future(manager._take(theirs))
    try:
        await asyncio.sleep(POLL_S * 3)  # _take polls meanwhile
        assert theirs.done is not None and not theirs.done.done()
        assert path.connection is None
        manager._install(ours, ours_pc)  # our _open() gets there
        assert path.connection is ours_pc
        assert manager._attempts.get(theirs.path_id) is theirs  # the peer's checks go on
    finally:
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        await _stop(manager)


async def test_the_peers_attempt_takes_the_connection_the_peer_opened() -> None:
    theirs_pc = _Conn(initiator=False)
    manager = _manager(theirs_pc)
    path = PeerPath("bob", b"d" * 16, PEER_STATIC, initiator=False)
    theirs = _attempt(manager, path, controlling=False)
    taking = asyncio.ensure_future(manager._take(theirs))
    try:
        await asyncio.sleep(POLL_S * 3)
        assert path.connection is theirs_pc and path.live
        assert theirs.done is not None and theirs.done.done()
    finally:
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        await _stop(manager)


class _Home:
    """The home supernode link: what path messages are sent through."""

    def __init__(self) -> None:
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.sent: list[Forward] = []

    def notify(self, envelope: Forward) -> None:
        self.sent.append(envelope)


def _back(manager: PathManager, path: PeerPath) -> _Conn:
    """The peer's attempt brings the lost path back: its connection is installed."""
    theirs_pc = _Conn(initiator=False)
    manager.endpoint.connections[("udp", theirs_pc.address)] = theirs_pc  # type: ignore[assignment]
    theirs = _attempt(manager, path, controlling=False)
    manager._install(theirs, theirs_pc)  # type: ignore[arg-type]
    assert path.connection is theirs_pc and path.live
    return theirs_pc


async def test_a_path_back_before_it_is_established_again_is_kept() -> None:
    manager = _manager()
    path = PeerPath("bob", b"d" * 16, PEER_STATIC, initiator=True)  # lost: no connection
    device = types.SimpleNamespace(device_id=path.device_id)
    started: list[object] = []

    async def confirm_home(timeout: float) -> bool:
        return True

    async def refresh_hosts() -> None:
        return None

    async def find_device(user: str, device_id: bytes | None = None) -> object:
        _back(manager, path)  # while we looked the peer up
        return device

    async def establish(*args: object, **kwargs: object) -> None:
        started.append(args)

    manager.session.confirm_home = confirm_home  # type: ignore[method-assign]
    manager._refresh_hosts = refresh_hosts  # type: ignore[method-assign]
    manager._find_device = find_device  # type: ignore[method-assign,assignment]
    manager._establish = establish  # type: ignore[method-assign,assignment]
    try:
        assert await manager._establish_again(path, deadline=time.monotonic() + 5)
        assert started == []  # no attempt, no connection of ours to replace the peer's
    finally:
        await _stop(manager)


async def test_an_attempt_to_establish_again_opens_nothing_once_the_path_is_back() -> None:
    manager = _manager()
    home = _Home()
    manager.session.home = home  # type: ignore[attr-defined]
    manager.session.home_address = None  # type: ignore[attr-defined]
    opened: list[object] = []

    async def connect(*args: object, **kwargs: object) -> _Conn:
        opened.append(args)
        return _Conn(initiator=True)

    manager.endpoint.connect = connect  # type: ignore[method-assign]
    path = PeerPath("bob", b"d" * 16, PEER_STATIC, initiator=True)
    ours = _attempt(manager, path, controlling=True)  # checking when the peer's got through
    ours.again = True
    theirs_pc = _back(manager, path)
    here = Candidate(Address.parse("127.0.0.1:40001"), CandidateKind.HOST, UDP_BASE, 1)
    there = Candidate(Address.of(*PEER_ADDRESS), CandidateKind.HOST, "remote", 1)
    try:
        await manager._open(ours, here, there, direct=True)  # our checks selected a pair
        assert opened == []  # a connection of ours to that address would close the peer's
        assert path.connection is theirs_pc and path.live
        assert ours.done is not None and ours.done.done() and ours.done.exception() is None
        assert ours.path_id not in manager._attempts
        await asyncio.sleep(0)  # the peer is told, and ends its side of our attempt
        cancels = [decode(envelope.payload) for envelope in home.sent]
        assert [type(c) for c in cancels] == [PathCancel]
    finally:
        await _stop(manager)
