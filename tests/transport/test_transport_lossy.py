"""The test helpers: mock clock, seeded impairment, Gilbert-Elliott, FakeNet, forwarder."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from hopline.testing import (
    FakeNet,
    GilbertElliott,
    ImpairingForwarder,
    Impairment,
    ImpairmentConfig,
    LossyPath,
    MockClock,
)
from hopline.transport import Link


def test_mock_clock_moves_only_forward_when_told() -> None:
    clock = MockClock(5.0)
    assert clock.now() == clock() == 5.0
    assert clock.advance(0.5) == 5.5
    assert clock.advance_to(5.0) == 5.5
    assert clock.advance_to(7.0) == 7.0
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1.0)


def drops(config: ImpairmentConfig, n: int, seed: int = 1) -> list[bool]:
    impairment = Impairment(config, random.Random(seed))
    return [not impairment.schedule(0.0) for _ in range(n)]


def test_same_seed_same_decisions() -> None:
    config = ImpairmentConfig(drop=0.3, duplicate=0.1, reorder=0.1, jitter=0.01)
    first = Impairment(config, random.Random(42))
    second = Impairment(config, random.Random(42))
    assert [first.schedule(i) for i in range(500)] == [second.schedule(i) for i in range(500)]


def test_independent_loss_rate_matches_the_config() -> None:
    lost = drops(ImpairmentConfig(drop=0.2), 20_000)
    assert sum(lost) / len(lost) == pytest.approx(0.2, abs=0.015)


def test_duplicates_and_reordering_are_counted() -> None:
    impairment = Impairment(
        ImpairmentConfig(duplicate=0.1, reorder=0.1, reorder_delay=0.05), random.Random(3)
    )
    copies = [impairment.schedule(0.0) for _ in range(10_000)]
    stats = impairment.stats
    assert stats.duplicated == sum(len(c) == 2 for c in copies)
    assert stats.duplicated / 10_000 == pytest.approx(0.1, abs=0.015)
    assert stats.reordered / 10_000 == pytest.approx(0.1, abs=0.015)
    assert stats.delivered == 10_000 + stats.duplicated
    assert stats.dropped == 0


def burst_lengths(lost: list[bool]) -> list[int]:
    runs, current = [], 0
    for flag in lost:
        if flag:
            current += 1
        elif current:
            runs.append(current)
            current = 0
    return runs


def test_gilbert_elliott_gives_the_loss_rate_in_bursts_of_the_mean_length() -> None:
    model = GilbertElliott.from_loss(0.1, 4.0)
    assert model.mean_loss == pytest.approx(0.1)
    lost = drops(ImpairmentConfig(burst=model), 100_000, seed=5)
    assert sum(lost) / len(lost) == pytest.approx(0.1, abs=0.01)
    runs = burst_lengths(lost)
    assert sum(runs) / len(runs) == pytest.approx(4.0, rel=0.1)
    independent = burst_lengths(drops(ImpairmentConfig(drop=0.1), 100_000, seed=5))
    assert sum(independent) / len(independent) < 1.2


def test_bursty_shortcut_and_validation() -> None:
    config = ImpairmentConfig.bursty(0.05, 3.0, delay=0.01)
    assert config.burst is not None and config.burst.mean_loss == pytest.approx(0.05)
    assert config.delay == 0.01
    with pytest.raises(ValueError):
        ImpairmentConfig(drop=1.5)
    with pytest.raises(ValueError):
        ImpairmentConfig(delay=-1.0)
    with pytest.raises(ValueError):
        GilbertElliott.from_loss(0.1, 0.5)
    with pytest.raises(ValueError):
        GilbertElliott(0.1, 0.0)


def test_lossy_path_delivers_in_arrival_order() -> None:
    path = LossyPath(Impairment(ImpairmentConfig(delay=0.01), random.Random(1)))
    for i in range(5):
        path.submit(bytes([i]), 0.0)
    assert len(path) == 5
    assert path.next_arrival == pytest.approx(0.01)
    assert path.pop_due(0.009) == []
    assert path.pop_due(0.01) == [bytes([i]) for i in range(5)]
    reordering = LossyPath(
        Impairment(ImpairmentConfig(reorder=0.5, reorder_delay=1.0), random.Random(2))
    )
    for i in range(50):
        reordering.submit(bytes([i]), 0.0)
    out = reordering.pop_due(0.0) + reordering.pop_due(1.0)
    assert sorted(out) == [bytes([i]) for i in range(50)]
    assert out != sorted(out)


def test_fake_net_stops_at_its_deadline_when_not_idle() -> None:
    a, b = Link(), Link()
    net = FakeNet(a, b, a_to_b=ImpairmentConfig(drop=1.0))
    a.send(b"lost", 0.0)
    assert not net.run_until_idle(timeout=2.0)
    assert net.clock.now() == pytest.approx(2.0)
    assert net.b_messages == []


# -- the real-socket forwarder ---------------------------------------------------------


async def echo_server(host: str) -> tuple[asyncio.DatagramTransport, tuple[str, int]]:
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, 0))
    name = transport.get_extra_info("sockname")
    return transport, (name[0], name[1])


async def test_forwarder_relays_both_ways_and_counts_impairments() -> None:
    server, server_addr = await echo_server("127.0.0.1")
    config = ImpairmentConfig(drop=0.3, duplicate=0.2, delay=0.002, jitter=0.002)
    fwd = await ImpairingForwarder.start(server_addr, config, seed=9)
    received: list[bytes] = []

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append(data)

    loop = asyncio.get_running_loop()
    client, _ = await loop.create_datagram_endpoint(Client, remote_addr=fwd.address)
    for i in range(300):
        client.sendto(i.to_bytes(2, "big"))
        if i % 10 == 9:
            await asyncio.sleep(0.002)  # stay well within the socket buffers
    await asyncio.sleep(0.2)
    up, down = fwd.stats.upstream, fwd.stats.downstream
    assert up.offered == 300
    assert 0.2 < up.dropped / up.offered < 0.4
    assert up.duplicated > 0 and down.duplicated > 0
    assert down.offered == up.delivered
    assert len(received) == down.delivered
    client.close()
    fwd.close()
    server.close()


async def test_forwarder_works_on_ipv6_loopback() -> None:
    server, server_addr = await echo_server("::1")
    fwd = await ImpairingForwarder.start(server_addr, ImpairmentConfig())
    assert fwd.address[0] == "::1"
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            if not got.done():
                got.set_result(data)

    client, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=fwd.address, family=socket.AF_INET6
    )
    client.sendto(b"ping6")
    assert await asyncio.wait_for(got, 2.0) == b"ping6"
    client.close()
    fwd.close()
    server.close()


def test_forwarder_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        ImpairingForwarder(("192.0.2.1", 9))
    with pytest.raises(ValueError, match="loopback"):
        ImpairingForwarder(("2001:db8::1", 9))
