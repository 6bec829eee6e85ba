"""Relay forwarding capacity: Hopline's supernode and coturn, same load, one core each.

    python benchmarks/relay.py [--quick] [--no-coturn] [--no-hopline] [--baseline-src DIR]

Two measurements, each run against one Hopline supernode (a real process,
with a login server, on loopback) and then against coturn (Debian's
``turnserver``, run by hand on 127.0.0.1: no TLS/DTLS, long-term
credentials, a static user, loopback peers allowed):

* **sweep** -- a load process (a plain blocking UDP socket) offers 200-byte
  datagrams at a fixed rate, spread over 16 allocations with one channel
  each, for a few seconds; the rate goes up until loss passes 5 % or the
  load process cannot offer more. "Delivered" counts relayed datagrams the
  client got: for Hopline after its secure connection decrypted and
  authenticated them (the supernode may bundle several into one encrypted
  UDP datagram; ``frames/datagram`` shows how much), for coturn every
  ChannelData datagram. The figures are the highest rate with < 0.1 % loss
  and the saturation throughput (the most delivered).
* **voice streams** -- N simultaneous streams, each its own channel bound to
  its own peer socket, 180-byte datagrams at 50 packets/s in *both*
  directions (peer -> relay -> client and back), for a few seconds; N goes
  up until a datagram is lost. For Hopline the client sends and receives
  through its secure connections (real encryption); for coturn it sends
  raw TURN ChannelData on the sockets aioice allocated and bound.

The relay (the supernode process, or every coturn thread) is pinned to CPU
0; the load, peer and client processes to CPU 1, so "per core" is honest
and the load side does not steal the relay's core. All of them run at nice
-15 (and so does their session's autogroup): on a shared machine other work
only gets what the benchmark leaves. Each row records the relay's CPU use
(from /proc), what else ran on its core (``others``) and the load side's
CPU: ``relay CPU`` near 100 % means the relay is the limit, ``load side``
near 100 % means the figure is a floor. ``pkt per relay-CPU-second``
(delivered / relay CPU seconds at the highest loss-free rate) is the
per-core comparison that does not depend on the load side.
``--baseline-src DIR`` first runs the same measurements with the servers
importing ``hopline`` from DIR (an older copy of the code): before/after in
one run. Results go to benchmarks/results/relay.json; docs/benchmarks.md
("Relay") explains the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
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

SIZE = 200  # sweep datagrams
VOICE_SIZE = 180  # voice datagrams (160-200 bytes)
VOICE_PPS = 50  # one 20 ms frame per stream and direction
USERS = 4
ALLOCATIONS_PER_USER = 4  # the supernode's per-user quota
ALLOCATIONS = USERS * ALLOCATIONS_PER_USER
CHANNELS_PER_ALLOCATION = 30  # under the supernode's 32, one is the sweep's
RELAY_CPU, LOAD_CPU = 0, 1
NICE = -15  # the benchmark's processes before anything else on a shared machine
IN_METRIC = 'hopline_supernode_relay_packets_total{direction="in"}'
OUT_METRIC = 'hopline_supernode_relay_packets_total{direction="out"}'
DROP_PREFIX = "hopline_supernode_dropped_total"
Addr = tuple[str, int]


# ---------------------------------------------------------------- processes and CPUs


def pin(pid: int, cpu: int) -> bool:
    """Pin every thread of ``pid`` to ``cpu``; False when this machine has one CPU."""
    if (os.cpu_count() or 1) < 2:
        return False
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(int(tid), {cpu})
    return True


def prioritise(pid: int) -> bool:
    """Run ``pid`` (and its session) at :data:`NICE`, so a busy machine leaves us its cores.

    Linux shares CPU fairly between sessions ("autogroups") before nice
    values count, so the session's autogroup gets the nice value too.
    False when not allowed (not root).
    """
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.setpriority(os.PRIO_PROCESS, int(tid), NICE)
        autogroup = Path(f"/proc/{pid}/autogroup")
        if autogroup.exists():
            autogroup.write_text(f"{NICE}\n")
    except (PermissionError, ProcessLookupError, OSError):
        return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy(cpu: int) -> float:
    """Busy seconds of CPU ``cpu`` since boot (everything but idle and iowait)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(v) for v in line.split()[1:]]
            return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


class CpuMeter:
    """CPU share of a set of processes over a window (1.0 = one core busy)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.start = time.perf_counter()
        self.before = [cpu_seconds(pid) for pid in pids]
        self.core_before = core_busy(RELAY_CPU)

    def shares(self) -> list[float]:
        """Each process's CPU seconds per wall second since the meter started,
        then the share of the relay's core that went to anything else."""
        wall = time.perf_counter() - self.start
        after = [cpu_seconds(pid) for pid in self.pids]
        shares = [(a - b) / wall for a, b in zip(after, self.before, strict=True)]
        core = (core_busy(RELAY_CPU) - self.core_before) / wall
        return [*shares, max(0.0, core - shares[0])]


def udp_errors() -> dict[str, int]:
    """The kernel's UDP error counters (/proc/net/snmp): buffer overflows show here."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    names, values = [line for line in lines if line[0] == "Udp:"][:2]
    wanted = ("InErrors", "RcvbufErrors", "SndbufErrors")
    return {n: int(v) for n, v in zip(names[1:], values[1:], strict=True) if n in wanted}


def errors_since(before: dict[str, int]) -> dict[str, int]:
    """How much each UDP error counter grew since ``before``."""
    return {k: v - before[k] for k, v in udp_errors().items() if v != before[k]}


def free_port() -> int:
    """A UDP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    """A spawned process answering commands over a pipe: ``call(name, *args)``."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(theirs, *args), daemon=True)
        self.proc.start()
        self.ready = self.conn.recv()

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.proc.pid is not None
        return self.proc.pid

    def send(self, name: str, *args: Any) -> None:
        """Start command ``name``; :meth:`result` collects its answer."""
        self.conn.send((name, args))

    def result(self) -> Any:
        """The answer to the last command sent."""
        answer = self.conn.recv()
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def call(self, name: str, *args: Any) -> Any:
        """Run command ``name`` and return its answer."""
        self.send(name, *args)
        return self.result()

    def stop(self) -> None:
        """Ask the child to quit; kill it if it does not."""
        with contextlib.suppress(OSError):
            self.conn.send(("quit", ()))
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


# ---------------------------------------------------------------- load side (blocking sockets)


def load_main(conn: Connection) -> None:
    """Child: the sweep's sender and the voice streams' peers, on plain blocking sockets."""
    load = LoadSide()
    conn.send(load.sweep_source)
    while True:
        name, args = conn.recv()
        if name == "quit":
            return
        conn.send(getattr(load, name)(*args))


class LoadSide:
    """The peers of the relay: one sweep socket and up to thousands of stream sockets."""

    def __init__(self) -> None:
        self.sweep_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sweep_sock.bind(("127.0.0.1", 0))
        self.sweep_source: Addr = self.sweep_sock.getsockname()
        self.socks: list[socket.socket] = []

    def offer(self, targets: list[Addr], rate: float, seconds: float) -> int:
        """Offer ``rate`` datagrams/s round-robin over ``targets``; return how many went out."""
        payload, sock, count = b"\x5a" * SIZE, self.sweep_sock, len(targets)
        sent, failed, start = 0, 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate)
            while sent < due:
                try:
                    sock.sendto(payload, targets[sent % count])
                except OSError:  # a full buffer loses it, as a network would
                    failed += 1
                sent += 1
            time.sleep(0.0002)
        return sent - failed

    def open_peers(self, n: int) -> list[Addr]:
        """Open ``n`` stream sockets (non-blocking); return their addresses."""
        while len(self.socks) < n:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.socks.append(sock)
        return [s.getsockname() for s in self.socks[:n]]

    def streams(self, targets: list[Addr], seconds: float, drain: float) -> tuple[int, int]:
        """50 datagrams/s from each of the first ``len(targets)`` sockets; (sent, received)."""
        socks = self.socks[: len(targets)]
        by_fd = {s.fileno(): s for s in socks}
        poller = select.epoll()
        for fd in by_fd:
            poller.register(fd, select.EPOLLIN)
        payload = b"\xa5" * VOICE_SIZE
        sent = received = 0
        try:
            for due in paced_groups(len(socks), seconds, drain):
                for i in due:
                    with contextlib.suppress(OSError):
                        socks[i].sendto(payload, targets[i])
                        sent += 1
                for fd, _ in poller.poll(0.001):
                    received += drain_socket(by_fd[fd])
        finally:
            poller.close()
        return sent, received


def drain_socket(sock: socket.socket) -> int:
    """Read everything waiting on a non-blocking socket; how many datagrams."""
    count = 0
    while True:
        try:
            sock.recv(2048)
        except BlockingIOError:
            return count
        count += 1


GROUPS = 10  # streams are spread over ten 2 ms slots of each 20 ms frame


def paced_groups(n: int, seconds: float, drain: float) -> Iterator[list[int]]:
    """Yield the streams due now (each every 20 ms), until ``seconds`` (+ ``drain`` idle)."""
    groups = [list(range(g, n, GROUPS)) for g in range(GROUPS)]
    slot, done = 1.0 / VOICE_PPS / GROUPS, 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds + drain:
        due = int(min(elapsed, seconds) / slot)
        batch: list[int] = []
        while done < due:
            batch += groups[done % GROUPS]
            done += 1
        yield batch


# ---------------------------------------------------------------- client side (asyncio)


def client_main(conn: Connection, kind: str, setup: dict[str, Any]) -> None:
    """Child: the relay's client (Hopline endpoints or aioice allocations), on uvloop."""
    run(_client_loop(conn, kind, setup))


async def _client_loop(conn: Connection, kind: str, setup: dict[str, Any]) -> None:
    agent: HoplineClient | CoturnClient
    agent = HoplineClient() if kind == "hopline" else CoturnClient()
    await agent.setup(setup)
    conn.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        name, args = await loop.run_in_executor(None, conn.recv)
        if name == "quit":
            agent.close()
            return
        try:
            answer = await getattr(agent, name)(*args)
        except Exception as exc:  # noqa: BLE001 -- handed to the parent, which raises it
            answer = exc
        conn.send(answer)


class ClientBase(ABC):
    """What both clients share: streams to peers over bound channels, counting."""

    def __init__(self) -> None:
        self.received = 0
        self.datagrams = 0  # UDP datagrams from the relay (Hopline may bundle frames)

    @abstractmethod
    def send_stream(self, index: int) -> None:
        """Send one voice datagram on stream ``index`` (each client its own way)."""

    async def streams(self, n: int, seconds: float, drain: float) -> tuple[int, int]:
        """50 datagrams/s on each of the first ``n`` streams; (sent, received)."""
        self.received = self.datagrams = sent = 0
        for due in paced_groups(n, seconds, drain):
            for i in due:
                self.send_stream(i)
                sent += 1
            await asyncio.sleep(0.001)
        return sent, self.received

    async def count_start(self) -> None:
        """Count datagrams relayed to the client from now on."""
        self.received = self.datagrams = 0

    async def count_stop(self) -> int:
        """How many arrived since :meth:`count_start`."""
        return self.received

    async def datagrams_seen(self) -> int:
        """UDP datagrams from the relay since the last count started."""
        return self.datagrams


class HoplineClient(ClientBase):
    """Certified users with four allocations each, on their secure connections."""

    def __init__(self) -> None:
        super().__init__()
        self.endpoints: list[Endpoint] = []
        # (connection, relay id, relayed address, user index) of every allocation
        self.allocations: list[tuple[PeerConnection, int, Address, int]] = []
        self.next_channel: dict[int, int] = {}  # per user
        self.frames: list[tuple[PeerConnection, int, bytes]] = []

    async def setup(self, setup: dict[str, Any]) -> None:
        """Connect each profile and allocate its quota."""
        target = Address.parse(setup["listen"]).as_tuple()
        for user, path in enumerate(setup["profiles"]):
            profile = Profile.open(Path(path))
            endpoint = Endpoint(
                static=profile.keys.static,
                certificate=profile.certificate,
                verifier=CertificateVerifier(profile.ls_key),
                datagram_handler=self._on_media,
            )
            self.endpoints.append(endpoint)
            pc = await endpoint.connect(target, Expectation(role=Role.SUPERNODE))
            self._count_datagrams(endpoint)
            for _ in range(setup.get("allocations_per_user", ALLOCATIONS_PER_USER)):
                reply = await pc.request(RelayAllocate())
                assert isinstance(reply, RelayAllocateReply)
                self.allocations.append((pc, reply.relay_id, reply.relayed, user))

    def _count_datagrams(self, endpoint: Endpoint) -> None:
        real = endpoint.udp_received

        def counting(data: bytes, address: tuple[str, int]) -> None:
            self.datagrams += 1
            real(data, address)

        endpoint.udp_received = counting  # type: ignore[method-assign]

    def _on_media(self, pc: PeerConnection, data: bytes) -> None:
        self.received += 1  # decrypted and authenticated by the client's connection

    async def bind(self, peers: list[Addr]) -> list[Addr]:
        """Bind a channel to each peer, allocations in turn; the relayed address of each."""
        targets = []
        payload = b"\x3c" * VOICE_SIZE
        for i, peer in enumerate(peers):
            pc, relay_id, relayed, user = self.allocations[i % len(self.allocations)]
            channel = self.next_channel.get(user, 0x4000)
            self.next_channel[user] = channel + 1
            await pc.request(
                RelayChannel(relay_id=relay_id, channel=channel, peer=Address.of(*peer))
            )
            self.frames.append((pc, channel, payload))
            targets.append(relayed.as_tuple())
        return targets

    async def rebase(self, first: int) -> None:
        """Streams start at bound channel ``first`` (the sweep's come first)."""
        self.frames = self.frames[first:]

    def send_stream(self, index: int) -> None:
        """One channel datagram on the owner's secure connection."""
        pc, channel, payload = self.frames[index]
        pc.core.send_channel(channel, payload, time.time())
        pc.service()

    def close(self) -> None:
        """Close the endpoints."""
        for endpoint in self.endpoints:
            endpoint.close()


class CoturnClient(ClientBase):
    """aioice TURN allocations; once a channel is bound, raw ChannelData both ways."""

    def __init__(self) -> None:
        super().__init__()
        self.transports: list[Any] = []
        self.inner: list[Any] = []
        self.frames: list[tuple[Any, bytes]] = []

    async def setup(self, setup: dict[str, Any]) -> None:
        """Sixteen allocations with the static user's credentials."""
        assert aioice_turn is not None
        for _ in range(ALLOCATIONS):
            transport, _ = await aioice_turn.create_turn_endpoint(
                asyncio.DatagramProtocol,
                server_addr=("127.0.0.1", setup["port"]),
                username="bench",
                password="secret",  # the benchmark's throwaway coturn user
            )
            inner = transport._TurnTransport__inner_protocol
            inner.datagram_received = self._counter(inner.datagram_received)
            self.transports.append(transport)
            self.inner.append(inner)

    def _counter(self, real: Callable[[bytes, Addr], None]) -> Callable[[bytes, Addr], None]:
        def counting(data: bytes, address: Addr) -> None:
            if len(data) >= 4 and 0x40 <= data[0] <= 0x7F:  # ChannelData
                self.received += 1
                self.datagrams += 1
                return
            real(data, address)

        return counting

    async def bind(self, peers: list[Addr]) -> list[Addr]:
        """Bind a channel to each peer (aioice's ChannelBind); the relayed address of each."""
        targets = []
        payload = b"\x3c" * VOICE_SIZE
        for i, peer in enumerate(peers):
            inner = self.inner[i % ALLOCATIONS]
            await inner.send_data(b"", peer)  # binds the next channel, sends an empty datagram
            channel = inner.peer_to_channel[peer]
            header = struct.pack("!HH", channel, len(payload))
            self.frames.append((inner.transport, header + payload))
            targets.append(self.transports[i % ALLOCATIONS].get_extra_info("sockname"))
        return targets

    async def rebase(self, first: int) -> None:
        """Streams start at bound channel ``first`` (the sweep's come first)."""
        self.frames = self.frames[first:]

    def send_stream(self, index: int) -> None:
        """One raw ChannelData datagram to coturn."""
        transport, frame = self.frames[index]
        transport.sendto(frame)

    def close(self) -> None:
        """Close the allocations."""
        for transport in self.transports:
            transport.close()


# ---------------------------------------------------------------- the measurements


class Bench:
    """One relay under test, its client and load processes, and the measurements."""

    def __init__(
        self, name: str, relay_pid: int, client: Child, load: Child, relayed: Callable[[], Any]
    ) -> None:
        self.name, self.relay_pid, self.client, self.load = name, relay_pid, client, load
        self.relayed = relayed  # the relay's own counters (Hopline), or None

    def pids(self) -> list[int]:
        """Relay, client, load."""
        return [self.relay_pid, self.client.pid, self.load.pid]

    def sweep(self, rates: list[float], seconds: float) -> list[dict[str, Any]]:
        """Offer each rate until loss passes 5 % or the load side cannot offer more."""
        sources = [self.load.ready] * ALLOCATIONS
        targets = self.client.call("bind", sources)
        self.client.call("rebase", ALLOCATIONS)
        time.sleep(0.5)
        rows = []
        for rate in rates:
            row = self.offer(targets, rate, seconds)
            rows.append(row)
            print(f"  {self.name} sweep {row_text(row)}", flush=True)
            if row["loss"] > 0.05 or row["sent_pps"] < 0.9 * rate:
                break
        return rows

    def offer(self, targets: list[Addr], rate: float, seconds: float) -> dict[str, Any]:
        """One sweep step."""
        before = self.relayed()
        self.client.call("count_start")
        kernel = udp_errors()
        meter = CpuMeter(self.pids())
        sent = self.load.call("offer", targets, rate, seconds)
        cpu = meter.shares()
        time.sleep(1.0)  # the last datagrams drain
        received = self.client.call("count_stop")
        datagrams = self.client.call("datagrams_seen")
        kernel = errors_since(kernel)
        after = self.relayed()
        return {
            "offered_pps": rate,
            "sent_pps": sent / seconds,
            "delivered_pps": received / seconds,
            "loss": max(0.0, 1 - received / sent) if sent else 1.0,
            "frames_per_datagram": received / datagrams if datagrams else None,
            "relay_cpu": cpu[0],
            "client_cpu": cpu[1],
            "load_cpu": cpu[2],
            "relay_core_others": cpu[3],
            "relay_counters": counter_delta(before, after),
            "kernel_udp_errors": kernel,
        }

    def voice(self, counts: list[int], seconds: float) -> list[dict[str, Any]]:
        """Streams at 50 packets/s each way, more each step, until one datagram is lost."""
        peers = self.load.call("open_peers", max(counts))
        targets = self.client.call("bind", peers)
        self.client.call("rebase", 0)
        time.sleep(0.5)
        rows = []
        for n in counts:
            row = self.streams(targets[:n], seconds)
            rows.append(row)
            print(f"  {self.name} voice {voice_text(row)}", flush=True)
            if row["lost"]:
                break
        return rows

    def streams(self, targets: list[Addr], seconds: float) -> dict[str, Any]:
        """One voice step: ``len(targets)`` streams at once."""
        n, drain = len(targets), 1.0
        before = self.relayed()
        kernel = udp_errors()
        meter = CpuMeter(self.pids())
        self.load.send("streams", targets, seconds, drain)
        self.client.send("streams", n, seconds, drain)
        time.sleep(seconds)
        cpu = meter.shares()  # while the streams run
        peer_sent, peer_received = self.load.result()
        client_sent, client_received = self.client.result()
        datagrams = self.client.call("datagrams_seen")
        lost_down = peer_sent - client_received  # peer -> relay -> client
        lost_up = client_sent - peer_received  # client -> relay -> peer
        return {
            "streams": n,
            "relayed_pps": (peer_sent + client_sent) / seconds,
            "sent": {"peers": peer_sent, "client": client_sent},
            "received": {"peers": peer_received, "client": client_received},
            "lost": max(0, lost_down) + max(0, lost_up),
            "frames_per_datagram": client_received / datagrams if datagrams else None,
            "relay_cpu": cpu[0],
            "client_cpu": cpu[1],
            "load_cpu": cpu[2],
            "relay_core_others": cpu[3],
            "kernel_udp_errors": errors_since(kernel),
            "relay_counters": counter_delta(before, self.relayed()),
        }

    def stop(self) -> None:
        """Stop the client and load processes."""
        self.client.stop()
        self.load.stop()


def counter_delta(before: Any, after: Any) -> dict[str, float] | None:
    """What the relay's counters moved by (Hopline), or None (coturn)."""
    if before is None or after is None:
        return None
    keys = set(before) | set(after)
    moved = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys}
    return {k: v for k, v in sorted(moved.items()) if v}


def row_text(row: dict[str, Any]) -> str:
    """One sweep row for the progress log."""
    return (
        f"offered {row['offered_pps']:,.0f} sent {row['sent_pps']:,.0f} "
        f"delivered {row['delivered_pps']:,.0f} loss {row['loss']:.2%} "
        f"relay CPU {row['relay_cpu']:.0%} (others {row['relay_core_others']:.0%}) "
        f"load-side CPU {row['client_cpu'] + row['load_cpu']:.0%}"
    )


def voice_text(row: dict[str, Any]) -> str:
    """One voice row for the progress log."""
    return (
        f"{row['streams']} streams ({row['relayed_pps']:,.0f} pkt/s) lost {row['lost']} "
        f"relay CPU {row['relay_cpu']:.0%} (others {row['relay_core_others']:.0%}) "
        f"load-side CPU {row['client_cpu'] + row['load_cpu']:.0%}"
    )


def relay_counters(metrics: str) -> Callable[[], dict[str, float] | None]:
    """A reader of the supernode's relay counters (packets in/out, drops by reason)."""

    def read() -> dict[str, float] | None:
        time.sleep(1.1)  # the metrics endpoint snapshots once a second
        values = scrape_metrics(metrics)
        wanted = (IN_METRIC, OUT_METRIC)
        return {k: v for k, v in values.items() if k in wanted or k.startswith(DROP_PREFIX)}

    return read


# ---------------------------------------------------------------- the two relays


def hopline_run(plan: Plan, src: str | None = None) -> dict[str, Any]:
    """Both measurements through one supernode process (and its login server).

    ``src``: run the servers on the ``hopline`` package in that directory
    instead (an older copy of the code, for a before/after comparison).
    """
    with (
        tempfile.TemporaryDirectory(prefix="hopline-relay-") as tmp,
        Cluster(Path(tmp) / "logs") as cluster,
    ):
        workdir = Path(tmp)
        with python_path(src):
            ls, nodes = start_network(cluster, workdir, supernodes=1)
        sn = nodes[0]
        pinned = pin(sn.pid, RELAY_CPU)
        prioritise(sn.pid)  # it runs in a session of its own
        paths = run(_profiles(workdir, ls, range(USERS)))
        setup = {"listen": sn.ready["listen"], "profiles": paths}
        bench = Bench(
            "hopline",
            sn.pid,
            Child(client_main, "hopline", setup),
            Child(load_main),
            relay_counters(sn.ready["metrics"]),
        )
        try:
            result = measure(bench, plan, pinned, ALLOCATIONS * CHANNELS_PER_ALLOCATION)
            if plan.owner_streams:
                bench.client.stop()
                result |= one_stream_per_owner(bench, plan, workdir, ls, sn)
            return result
        finally:
            bench.stop()


def one_stream_per_owner(
    bench: Bench, plan: Plan, workdir: Path, ls: Proc, sn: Proc
) -> dict[str, Any]:
    """Voice streams again, but each stream its own user's only allocation.

    Nothing can be bundled then: each owner gets one frame per 20 ms. This
    is how a relay serving many one-call users is loaded.
    """
    users = range(USERS, USERS + max(plan.owner_streams))
    paths = run(_profiles(workdir, ls, users))
    setup = {"listen": sn.ready["listen"], "profiles": paths, "allocations_per_user": 1}
    bench.client = Child(client_main, "hopline", setup)
    bench.name = "hopline, one stream per owner"
    rows = bench.voice(plan.owner_streams, plan.seconds)
    carried = [r["streams"] for r in rows if not r["lost"]]
    return {
        "voice_one_stream_per_owner": rows,
        "voice_streams_one_per_owner": max(carried, default=0),
        "voice_one_per_owner_limited_by_plan": len(carried) == len(plan.owner_streams),
    }


@contextlib.contextmanager
def python_path(src: str | None) -> Iterator[None]:
    """Processes started inside import ``hopline`` from ``src`` (None: unchanged)."""
    if src is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = src
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


async def _profiles(workdir: Path, ls: Proc, users: range) -> list[str]:
    """Register and log in the users (each from its own loopback address)."""
    paths = []
    for n in users:
        await logged_in(workdir, ls, f"relayuser{n}", bind=f"127.0.0.{10 + n}")
        paths.append(str(workdir / f"relayuser{n}"))
    return paths


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


def coturn_run(plan: Plan) -> dict[str, Any] | str:
    """Both measurements through coturn; a string says why they were skipped."""
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
        argv = [turnserver, "-c", str(conf)]
        if (os.cpu_count() or 1) >= 2:
            argv = ["taskset", "-c", str(RELAY_CPU), *argv]  # every thread on one core
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)  # turnserver starts
            pinned = pin(proc.pid, RELAY_CPU)
            bench = Bench(
                "coturn",
                proc.pid,
                Child(client_main, "coturn", {"port": port}),
                Child(load_main),
                lambda: None,
            )
            try:
                return measure(bench, plan, pinned)
            finally:
                bench.stop()
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


class Plan:
    """Rates, stream counts and durations of one run."""

    def __init__(self, quick: bool) -> None:
        if quick:
            self.rates = [10_000.0, 20_000.0, 40_000.0]
            self.streams = [50, 150]
            self.owner_streams: list[int] = []
            self.seconds = 1.0
        else:
            self.rates = [10_000.0 * k for k in (1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20)]
            self.streams = [50, 100, 150, 200, 250, 300, 350, 400, 480, 600, 800, 1000]
            self.owner_streams = [25, 50, 75, 100, 150, 200]
            self.seconds = 3.0


def measure(bench: Bench, plan: Plan, pinned: bool, most: int | None = None) -> dict[str, Any]:
    """The sweep and the voice streams (at most ``most``) through one relay, and the figures."""
    counts = [n for n in plan.streams if most is None or n <= most]
    sweep = bench.sweep(plan.rates, plan.seconds)
    voice = bench.voice(counts, plan.seconds)
    clean = [r for r in sweep if r["loss"] < 0.001]
    best = max(clean, key=lambda r: r["delivered_pps"]) if clean else None
    carried = [r["streams"] for r in voice if not r["lost"]]
    return {
        "pinned_to_one_core": pinned,
        "sweep": sweep,
        "voice": voice,
        "lossless_pps": best["delivered_pps"] if best else 0.0,
        "saturation_pps": max(r["delivered_pps"] for r in sweep),
        "pps_per_relay_cpu_second": (
            best["delivered_pps"] / best["relay_cpu"] if best and best["relay_cpu"] else None
        ),
        "voice_streams": max(carried, default=0),
        "voice_limited_by_plan": len(carried) == len(counts),
    }


# ---------------------------------------------------------------- report


def report(
    hopline: dict[str, Any] | str,
    coturn: dict[str, Any] | str,
    plan: Plan,
    baseline: dict[str, Any] | None = None,
) -> None:
    """Print the tables and the ratio; write benchmarks/results/relay.json."""
    result: dict[str, Any] = {
        "size": SIZE,
        "voice_size": VOICE_SIZE,
        "seconds": plan.seconds,
        "allocations": ALLOCATIONS,
        "cpus": os.cpu_count(),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "hopline": hopline,
        "coturn": coturn,
    }
    runs: list[tuple[str, dict[str, Any] | str]] = [("Hopline supernode", hopline)]
    if baseline is not None:
        runs.insert(0, ("Hopline supernode, baseline code", baseline))
        result["hopline_baseline"] = baseline
        if isinstance(hopline, dict):
            result["ratios_to_baseline"] = ratios(hopline, baseline)
    runs.append(("coturn", coturn))
    for name, data in runs:
        if isinstance(data, str):
            print(f"\n{name}: {data}")
            continue
        print_sweep(name, data)
        print_voice(name, data)
        if "voice_one_stream_per_owner" in data:
            print_voice(name, data, "voice_one_stream_per_owner", " (one per owner)")
    if isinstance(hopline, dict) and isinstance(coturn, dict):
        result["ratios"] = ratios(hopline, coturn)
        print_summary(hopline, coturn, result["ratios"])
    if baseline is not None and isinstance(hopline, dict):
        print_summary(hopline, baseline, result["ratios_to_baseline"], "baseline")
    write_json("relay", result)


def print_sweep(name: str, data: dict[str, Any]) -> None:
    """The sweep table of one relay."""
    headers = ["offered pkt/s", "sent", "delivered", "loss", "relay CPU", "others", "load side"]
    headers.append("frames/datagram")
    rows = [
        [
            f"{r['offered_pps']:,.0f}",
            f"{r['sent_pps']:,.0f}",
            f"{r['delivered_pps']:,.0f}",
            f"{r['loss']:.2%}",
            f"{r['relay_cpu']:.0%}",
            f"{r['relay_core_others']:.0%}",
            f"{r['client_cpu'] + r['load_cpu']:.0%}",
            "-" if r["frames_per_datagram"] is None else f"{r['frames_per_datagram']:.2f}",
        ]
        for r in data["sweep"]
    ]
    title = f"{name}: {SIZE}-byte datagrams peer -> client, {ALLOCATIONS} channels"
    print_table(title, headers, rows)


def print_voice(name: str, data: dict[str, Any], key: str = "voice", how: str = "") -> None:
    """The voice table of one relay (``key``: which voice rows)."""
    headers = ["streams", "relayed pkt/s", "lost", "relay CPU", "others", "load side"]
    headers.append("frames/datagram")
    rows = [
        [
            str(r["streams"]),
            f"{r['relayed_pps']:,.0f}",
            str(r["lost"]),
            f"{r['relay_cpu']:.0%}",
            f"{r['relay_core_others']:.0%}",
            f"{r['client_cpu'] + r['load_cpu']:.0%}",
            "-" if r["frames_per_datagram"] is None else f"{r['frames_per_datagram']:.2f}",
        ]
        for r in data[key]
    ]
    title = f"{name}: voice streams{how}, {VOICE_SIZE} bytes at 50 pkt/s each way"
    print_table(title, headers, rows)


def ratios(hopline: dict[str, Any], coturn: dict[str, Any]) -> dict[str, float | None]:
    """Hopline / coturn for each figure (None where coturn's is zero or missing)."""
    out: dict[str, float | None] = {}
    for key in ("lossless_pps", "saturation_pps", "pps_per_relay_cpu_second", "voice_streams"):
        h, c = hopline.get(key), coturn.get(key)
        out[key] = h / c if h is not None and c else None
    return out


def print_summary(
    hopline: dict[str, Any],
    other: dict[str, Any],
    ratio: dict[str, float | None],
    name: str = "coturn",
) -> None:
    """Side by side, with the ratio."""
    headers = ["figure", "Hopline", name, f"Hopline / {name}"]
    rows = []
    for key, label in (
        ("lossless_pps", "pkt/s with < 0.1% loss"),
        ("saturation_pps", "saturation pkt/s"),
        ("pps_per_relay_cpu_second", "pkt per relay-CPU-second"),
        ("voice_streams", "voice streams, zero loss"),
    ):
        h, c, r = hopline.get(key), other.get(key), ratio.get(key)
        rows.append([label, fmt(h), fmt(c), "-" if r is None else f"{r:.2f}"])
    print_table(f"Side by side with {name} (one relay core each)", headers, rows)
    for label, data in (("Hopline", hopline), (name, other)):
        if data["voice_limited_by_plan"]:
            print(f"note: {label} carried every stream count tried: its figure is a floor")


def fmt(value: float | None) -> str:
    """A figure for the table."""
    return "-" if value is None else f"{value:,.0f}"


def main() -> None:
    """Run both relays, print the tables, write benchmarks/results/relay.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rates, short runs")
    parser.add_argument("--no-coturn", action="store_true", help="skip the coturn comparison")
    parser.add_argument("--no-hopline", action="store_true", help="only coturn")
    parser.add_argument(
        "--baseline-src",
        metavar="DIR",
        help="also run a supernode on the hopline package in DIR (older code): before/after",
    )
    args = parser.parse_args()
    plan = Plan(args.quick)
    prioritise(os.getpid())  # the processes started below inherit it
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {LOAD_CPU})  # children inherit; the relays are moved to CPU 0
    hopline: dict[str, Any] | str = "skipped (--no-hopline)"
    baseline: dict[str, Any] | None = None
    if args.baseline_src:
        baseline = hopline_run(plan, args.baseline_src)
    if not args.no_hopline:
        hopline = hopline_run(plan)
    coturn: dict[str, Any] | str = "skipped (--no-coturn)"
    if not args.no_coturn:
        coturn = coturn_run(plan)
    report(hopline, coturn, plan, baseline)


if __name__ == "__main__":
    main()
