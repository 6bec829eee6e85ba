"""Two PathCheckers over real UDP sockets on loopback, driven by a plain select loop."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest

from hopline.path.candidates import CandidateKind, from_endpoint, gather, to_endpoint
from hopline.path.checks import PathChecker, PathSelected
from hopline.wire.types import Address


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind(("127.0.0.1", 0))
    b.bind(("127.0.0.1", 0))
    yield a, b
    a.close()
    b.close()


def _address(sock: socket.socket) -> Address:
    host, port = sock.getsockname()
    return Address.of(host, port)


def _pump(sock: socket.socket, checker: PathChecker, now: float) -> None:
    for base, dest, data in checker.datagrams_to_send(now):
        assert base == "udp"
        sock.sendto(data, dest.as_tuple())


def test_checks_select_the_loopback_pair_over_real_sockets(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    sa, sb = sockets
    # a dead candidate first: its checks go nowhere and must not hold the selection back
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_address = _address(dead)
    dead.close()
    local_a = gather([_address(sa)], None)
    local_b = gather([_address(sb)], None)
    now = time.monotonic()
    a = PathChecker(
        controlling=True,
        local_ufrag="ua",
        remote_ufrag="ub",
        key=b"k" * 32,
        local=local_a,
        remote=[from_endpoint(to_endpoint(c)) for c in local_b + gather([dead_address], None)],
        now=now,
    )
    b = PathChecker(
        controlling=False,
        local_ufrag="ub",
        remote_ufrag="ua",
        key=b"k" * 32,
        local=local_b,
        remote=[from_endpoint(to_endpoint(c)) for c in local_a],
        now=now,
    )
    peers = {sa: a, sb: b}
    selected: dict[PathChecker, PathSelected] = {}
    give_up = now + 10.0
    while len(selected) < 2 and time.monotonic() < give_up:
        now = time.monotonic()
        for sock, checker in peers.items():
            timer = checker.get_timer()
            if timer is not None and timer <= now:
                checker.handle_timer(now)
            _pump(sock, checker, now)
            while (event := checker.next_event()) is not None:
                if isinstance(event, PathSelected):
                    selected[checker] = event
        timers = [t for t in (a.get_timer(), b.get_timer()) if t is not None]
        wait = max(0.0, min(timers, default=now + 0.05) - time.monotonic())
        readable, _, _ = select.select([sa, sb], [], [], min(wait, 0.05))
        for sock in readable:
            data, source = sock.recvfrom(2048)
            assert peers[sock].receive(data, "udp", Address.of(*source), time.monotonic())
    assert set(selected) == {a, b}
    assert selected[a].direct and selected[b].direct
    assert selected[a].remote.address == _address(sb)
    assert selected[b].remote.address == _address(sa)
    assert selected[a].local.kind is CandidateKind.HOST
    assert not a.dropped and not b.dropped
