"""Relay forwarding capacity: 200-byte datagrams through one supernode process (and coturn).

    python benchmarks/relay.py [--quick] [--no-coturn]

A login server and one supernode run as real processes on loopback. A
certified client holds eight allocations (two users, four each: the per-user
quota) with a channel bound to the sending peer on each, so the per-allocation
rate limit (5,000 packets/s) is not what is measured. A separate sender
process (a plain blocking UDP socket) offers 200-byte datagrams at a fixed
rate, spread over the eight relayed ports, for a few seconds. For each
offered rate the table shows what the supernode relayed (its
``relay_packets_total{direction="in"}`` counter) and what reached the client
over its secure connections.

The same load then goes through coturn (Debian's ``turnserver``, run by hand
on 127.0.0.1 with no TLS/DTLS, long-term credentials, a static user and
loopback peers allowed) to eight ``aioice`` TURN allocations with channels,
counted at the client. Both clients are Python in this process, so for
coturn the client is likely the limit: its figure is a floor, and the ratio
is an upper bound on how close Hopline gets. ``--no-coturn`` (or no
``turnserver``/``aioice``) skips it. Results go to benchmarks/results/relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.client.profile import Profile
from hopline.connection import Expectation
from hopline.demo.cluster import Cluster, Proc
from hopline.identity import CertificateVerifier, Role
from hopline.runtime.endpoint import Endpoint, PeerConnection
from hopline.runtime.loop import run
from hopline.testing.network import logged_in, scrape_metrics, start_network
from hopline.wire import Address
from hopline.wire.relay import RelayAllocate, RelayAllocateReply, RelayChannel

try:
    import aioice.turn as aioice_turn
except ImportError:  # the coturn comparison is skipped, with the reason printed
    aioice_turn = None

SIZE = 200
ALLOCATIONS_PER_USER = 4
USERS = 2
IN_METRIC = 'hopline_supernode_relay_packets_total{direction="in"}'


def free_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def send_load(port: int, targets: list[tuple[str, int]], rate: float, seconds: float) -> None:
    """Child process: offer ``rate`` datagrams/s to ``targets`` round-robin for ``seconds``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    payload = b"\x5a" * SIZE
    sent, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        due = int(elapsed * rate)
        while sent < due:
            with contextlib.suppress(OSError):  # a full buffer loses it, as a network would
                sock.sendto(payload, targets[sent % len(targets)])
            sent += 1
        time.sleep(0.0005)
    sock.close()


def offer(port: int, targets: list[tuple[str, int]], rate: float, seconds: float) -> None:
    """Run the sender process to completion."""
    proc = multiprocessing.get_context("spawn").Process(
        target=send_load, args=(port, targets, rate, seconds)
    )
    proc.start()
    proc.join()


class Counting:
    """Counts datagrams arriving on a client's unreliable channel."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, pc: PeerConnection, data: bytes) -> None:
        self.count += 1


async def hopline_clients(
    profiles: list[Profile], sn: Proc, peer: Address, counter: Counting
) -> tuple[list[Endpoint], list[tuple[str, int]]]:
    """Connect each profile, allocate its quota, bind a channel to ``peer`` on each."""
    endpoints, targets = [], []
    for profile in profiles:
        endpoint = Endpoint(
            static=profile.keys.static,
            certificate=profile.certificate,
            verifier=CertificateVerifier(profile.ls_key),
            datagram_handler=counter,
        )
        endpoints.append(endpoint)
        pc = await endpoint.connect(
            Address.parse(sn.ready["listen"]).as_tuple(), Expectation(role=Role.SUPERNODE)
        )
        for n in range(ALLOCATIONS_PER_USER):
            reply = await pc.request(RelayAllocate())
            assert isinstance(reply, RelayAllocateReply)
            await pc.request(RelayChannel(relay_id=reply.relay_id, channel=0x4000 + n, peer=peer))
            targets.append(reply.relayed.as_tuple())
    return endpoints, targets


async def sweep(
    targets: list[tuple[str, int]],
    port: int,
    rates: list[float],
    seconds: float,
    received: Any,
    relayed: Any,
) -> list[dict[str, Any]]:
    """Offer each rate; ``received()`` counts at the client, ``relayed()`` at the relay."""
    rows = []
    loop = asyncio.get_running_loop()
    for rate in rates:
        before_rx, before_relay = received(), relayed()
        started = time.perf_counter()
        await loop.run_in_executor(None, offer, port, targets, rate, seconds)
        await asyncio.sleep(1.5)  # the last datagrams drain; one metrics snapshot passes
        elapsed = seconds
        rx = (received() - before_rx) / elapsed
        after_relay = relayed()
        relay_rate = None if after_relay is None else (after_relay - before_relay) / elapsed
        rows.append(
            {
                "offered_pps": rate,
                "relayed_pps": relay_rate,
                "delivered_pps": rx,
                "loss": max(0.0, 1 - rx / rate),
                "wall_s": time.perf_counter() - started,
            }
        )
    return rows


def hopline_run(rates: list[float], seconds: float) -> list[dict[str, Any]]:
    """The sweep through one supernode process."""
    with (
        tempfile.TemporaryDirectory(prefix="hopline-relay-") as tmp,
        Cluster(Path(tmp) / "logs") as cluster,
    ):
        workdir = Path(tmp)
        ls, nodes = start_network(cluster, workdir, supernodes=1)
        sn = nodes[0]

        async def main() -> list[dict[str, Any]]:
            profiles = [await logged_in(workdir, ls, f"relayuser{n}") for n in range(USERS)]
            port = free_port()
            counter = Counting()
            peer = Address.of("127.0.0.1", port)
            endpoints, targets = await hopline_clients(profiles, sn, peer, counter)
            try:
                return await sweep(
                    targets,
                    port,
                    rates,
                    seconds,
                    lambda: counter.count,
                    lambda: scrape_metrics(sn.ready["metrics"]).get(IN_METRIC, 0.0),
                )
            finally:
                for endpoint in endpoints:
                    endpoint.close()

        return run(main())


TURN_CONFIG = """listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port={port}
min-port=49152
max-port=65000
no-tls
no-dtls
lt-cred-mech
user=bench:secret
realm=hopline.test
allow-loopback-peers
no-cli
no-multicast-peers
log-file={log}
pidfile={pid}
"""


def coturn_run(rates: list[float], seconds: float) -> list[dict[str, Any]] | str:
    """The same sweep through coturn; a string says why it was skipped."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        return "turnserver not installed (apt-get install coturn)"
    if aioice_turn is None:
        return "aioice not installed (pip install aioice)"
    with tempfile.TemporaryDirectory(prefix="hopline-coturn-") as tmp:
        port = free_port()
        conf = Path(tmp) / "turnserver.conf"
        conf.write_text(
            TURN_CONFIG.format(port=port, log=Path(tmp) / "turn.log", pid=Path(tmp) / "turn.pid")
        )
        proc = subprocess.Popen(
            [turnserver, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            return run(_coturn_main(port, rates, seconds))
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _coturn_main(port: int, rates: list[float], seconds: float) -> list[dict[str, Any]]:
    assert aioice_turn is not None

    class Receiver(asyncio.DatagramProtocol):
        count = 0

        def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
            Receiver.count += 1

    await asyncio.sleep(1.0)  # turnserver starts
    peer_port = free_port()
    peer = ("127.0.0.1", peer_port)
    transports, targets = [], []
    for _ in range(USERS * ALLOCATIONS_PER_USER):
        transport, _protocol = await aioice_turn.create_turn_endpoint(
            Receiver, server_addr=("127.0.0.1", port), username="bench", password="secret"
        )
        transports.append(transport)
        transport.sendto(b"open", peer)  # aioice installs a permission and binds a channel
        targets.append(transport.get_extra_info("sockname"))
    await asyncio.sleep(1.0)
    try:
        return await sweep(targets, peer_port, rates, seconds, lambda: Receiver.count, lambda: None)
    finally:
        for transport in transports:
            transport.close()


def main() -> None:
    """Run the sweeps, print the tables, write benchmarks/results/relay.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rates, short runs")
    parser.add_argument("--no-coturn", action="store_true", help="skip the coturn comparison")
    args = parser.parse_args()
    rates = [5_000.0, 20_000.0] if args.quick else [5_000.0, 10_000.0, 20_000.0, 40_000.0, 80_000.0]
    seconds = 1.5 if args.quick else 4.0
    hopline = hopline_run(rates, seconds)
    coturn: list[dict[str, Any]] | str = "skipped (--no-coturn)"
    if not args.no_coturn:
        coturn = coturn_run(rates, seconds)
    headers = ["offered pkt/s", "relayed by SN", "delivered", "loss"]
    rows = [
        [
            f"{r['offered_pps']:,.0f}",
            f"{r['relayed_pps']:,.0f}",
            f"{r['delivered_pps']:,.0f}",
            f"{r['loss']:.1%}",
        ]
        for r in hopline
    ]
    print_table(f"Hopline relay, {SIZE}-byte datagrams, 8 allocations", headers, rows)
    result: dict[str, Any] = {"size": SIZE, "seconds": seconds, "hopline": hopline}
    best_hopline = max(r["delivered_pps"] for r in hopline)
    result["hopline_capacity_pps"] = best_hopline
    if isinstance(coturn, str):
        print(f"\ncoturn: {coturn}")
        result["coturn"] = coturn
    else:
        rows = [
            [f"{r['offered_pps']:,.0f}", f"{r['delivered_pps']:,.0f}", f"{r['loss']:.1%}"]
            for r in coturn
        ]
        print_table(
            "coturn + aioice client, same load", ["offered pkt/s", "delivered", "loss"], rows
        )
        best_coturn = max(r["delivered_pps"] for r in coturn)
        result |= {"coturn": coturn, "coturn_capacity_pps": best_coturn}
        result["ratio_hopline_to_coturn"] = best_hopline / best_coturn
        print(
            f"\ncapacity: Hopline {best_hopline:,.0f} pkt/s, coturn (floor) "
            f"{best_coturn:,.0f} pkt/s, ratio {best_hopline / best_coturn:.2f}"
        )
    write_json("relay", result)


if __name__ == "__main__":
    main()
