"""The STUN service in real supernode processes on loopback, with clients Hopline does not
contain (aioice, and Debian's ``stun`` when installed) and ``hopline netcheck``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aioice import stun as aioice_stun

from hopline.client.hostcache import HostCache, Source
from hopline.demo.cluster import Cluster, Proc, hopline_command
from hopline.nat.stun import BINDING, ChangeRequest, MessageClass, StunMessage, decode, encode
from hopline.testing.network import scrape_metrics, start_network
from hopline.wire import Address

Addr = tuple[str, int]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Proc]]:
    """A login server and two supernodes on loopback."""
    workdir = tmp_path_factory.mktemp("stun")
    with Cluster(workdir / "logs") as cluster:
        _, nodes = start_network(cluster, workdir, supernodes=2)
        yield nodes


def listen(node: Proc) -> Addr:
    host, port = Address.parse(node.ready["listen"]).as_tuple()
    return (str(host), port)


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Addr]] = asyncio.Queue()
        self.transactions: dict[bytes, aioice_stun.Transaction] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = aioice_stun.parse_message(data)
        except ValueError:
            message = None
        if message is not None and message.transaction_id in self.transactions:
            self.transactions[message.transaction_id].response_received(message, addr[:2])
        else:
            self.queue.put_nowait((data, (addr[0], addr[1])))

    def send_stun(self, message: aioice_stun.Message, addr: tuple[str, int]) -> None:
        """aioice's TransactionSender: how its transactions send."""
        self.transport.sendto(bytes(message), addr)

    @property
    def address(self) -> Addr:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    async def ask(
        self, server: Addr, change: ChangeRequest | None = None
    ) -> tuple[StunMessage, Addr]:
        txid = os.urandom(12)
        request = StunMessage(BINDING, MessageClass.REQUEST, txid, change_request=change)
        for _ in range(5):
            self.transport.sendto(encode(request), server)
            try:
                data, source = await asyncio.wait_for(self.queue.get(), 0.5)
            except TimeoutError:
                continue
            return decode(data), source
        raise AssertionError("no answer")


async def client() -> _Client:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
    return protocol


async def test_hopline_stun_request_is_answered_with_the_source_address(
    network: list[Proc],
) -> None:
    a, b = listen(network[0]), listen(network[1])
    me = await client()
    try:
        response, source = await me.ask(a)
        assert source == a
        assert response.message_class is MessageClass.SUCCESS
        assert response.xor_mapped_address == me.address
        assert response.response_origin == a
        assert response.other_address == b  # the partner supernode
        assert response.software == "hopline"
        assert response.fingerprint

        changed, source = await me.ask(a, ChangeRequest.IP | ChangeRequest.PORT)
        assert source == b  # the partner answered from its own port
        assert changed.xor_mapped_address == me.address

        alt, source = await me.ask(a, ChangeRequest.PORT)
        assert source[0] == a[0] and source[1] != a[1]  # the alternate port
        assert alt.response_origin == source
    finally:
        me.transport.close()


async def test_aioice_gets_its_mapped_address(network: list[Proc]) -> None:
    a = listen(network[0])
    me = await client()
    try:
        request = aioice_stun.Message(
            message_method=aioice_stun.Method.BINDING, message_class=aioice_stun.Class.REQUEST
        )
        transaction = aioice_stun.Transaction(request, a, me)  # type: ignore[arg-type]
        me.transactions[request.transaction_id] = transaction
        response, source = await transaction.run()
        assert source == a
        assert response.message_class == aioice_stun.Class.RESPONSE
        assert response.attributes["XOR-MAPPED-ADDRESS"] == me.address
        assert response.attributes["MAPPED-ADDRESS"] == me.address
        assert "FINGERPRINT" in response.attributes
    finally:
        me.transport.close()


@pytest.mark.skipif(shutil.which("stun") is None, reason="Debian's stun-client is not installed")
def test_debian_stun_client_gets_an_answer(network: list[Proc]) -> None:
    host, port = listen(network[0])
    done = subprocess.run(
        ["stun", f"{host}:{port}", "1", "-v"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    out = done.stdout + done.stderr
    assert f"MappedAddress = {host}:" in out, out


def test_bad_stun_is_counted_and_answers_are_counted(network: list[Proc]) -> None:
    a = listen(network[0])
    data = bytearray(
        encode(StunMessage(BINDING, MessageClass.REQUEST, bytes(12), fingerprint=True))
    )
    data[-1] ^= 0xFF
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(bytes(data), a)
    metrics = network[0].ready["metrics"]
    deadline = time.monotonic() + 10
    values: dict[str, float] = {}
    while time.monotonic() < deadline:
        values = scrape_metrics(metrics)
        if values.get('hopline_supernode_dropped_total{reason="stun:bad-fingerprint"}', 0) >= 1:
            break
        time.sleep(0.3)
    assert values['hopline_supernode_dropped_total{reason="stun:bad-fingerprint"}'] >= 1
    assert "hopline_supernode_stun_bindings_total" in values


def test_netcheck_json_against_two_supernodes(network: list[Proc]) -> None:
    argv = hopline_command(
        "netcheck",
        "--json",
        "--server",
        network[0].ready["listen"],
        "--server",
        network[1].ready["listen"],
    )
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["udp"] is True
    assert report["tcp"] is True
    assert report["nat_type"] == "open"  # loopback: the mapped address is the local one
    assert report["public_address"] in report["local_addresses"]
    assert report["public_address"].startswith("127.0.0.1:")
    assert set(report["rtt_ms"]) >= {network[0].ready["listen"]}
    assert report["upload_bps"] > 10_000_000  # loopback: a train of 16 answered


def test_netcheck_bad_arguments_are_one_line_exit_2(tmp_path: Path) -> None:
    for args in (["--server", "not-an-address"], ["--profile", str(tmp_path / "none")]):
        done = subprocess.run(
            hopline_command("netcheck", *args),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert "Traceback" not in done.stderr


def test_netcheck_takes_supernodes_from_the_profile_host_cache(
    network: list[Proc], tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    profile.mkdir()
    cache = HostCache.in_profile(profile)
    cache.merge([Address.parse(p.ready["listen"]) for p in network], Source.MANUAL, time.time())
    cache.save()
    argv = hopline_command("netcheck", "--json", "--profile", str(profile))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sorted(report["servers"]) == sorted(p.ready["listen"] for p in network)
    assert report["udp"] is True
