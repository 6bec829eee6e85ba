"""Chat tests on real processes: daemons' chat API, and what supernodes keep.

:class:`ChatNet` is a :class:`~hopline.testing.daemons.DaemonNet` (a login
server, supernodes and ``hopline up`` daemons) that can also answer the
questions an end-to-end messaging test asks of the supernodes:

* which supernodes own a user's slot (:meth:`ChatNet.owners`, computed the way
  the overlay computes it, from the node ids the supernodes reported);
* how many envelopes a supernode's offline SQLite file holds for a user
  (:meth:`ChatNet.held`, read-only, so a live supernode is not disturbed and a
  killed one's file is read as it was left);
* every byte a supernode keeps on disk (:meth:`ChatNet.disk_bytes`: its data
  directory, write-ahead logs included) and writes to its log, for checks that
  no plaintext reaches them.

What the processes *send* each other is checked by :class:`LoopbackCapture`:
a raw ``AF_PACKET`` socket on ``lo`` (root only) sees every packet between
all processes of the test (traffic to any local address passes ``lo``),
supernode to supernode, client to supernode, peer to peer and through relays.
The kernel fills a memory-mapped ring with them; each filled block is searched
once for a needle (a marker every message text carries), and only the flows
it was found in are kept, so the capture keeps up with a busy machine. The
local API is plaintext HTTP by design, so a test expects the needle there, and
only there: that is also the proof the capture sees the traffic.

:class:`DaemonApi` talks to one daemon's local API with the bearer token of
its profile (``daemon.json`` and ``api.token``); a refused request raises
:class:`ApiFailure` with the API's status and stable error code.
:func:`wait_until` polls a condition (a functional wait, never a timing
assertion).
"""

from __future__ import annotations

import mmap
import select
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import httpx

from hopline.daemon.files import read_daemon_info
from hopline.overlay.slots import OwnershipMap
from hopline.supernode.directory_service import REPLICATION
from hopline.testing.daemons import DaemonNet

OFFLINE_FILE = "offline.sqlite3"
ETH_P_ALL: Final = 0x0003
SOL_PACKET: Final = 263
PACKET_RX_RING, PACKET_STATISTICS, PACKET_VERSION, TPACKET_V3 = 5, 6, 10, 2
TP_STATUS_KERNEL, TP_STATUS_USER = 0, 1
BLOCK_STATUS: Final = 8  # tpacket_block_desc: version, offset_to_priv, then block_status
RING_FRAME: Final = 1 << 11
BLOCK_TIMEOUT_MS: Final = 100  # a block not yet full is handed over after this long
ETHERNET_HEADER: Final = 14
IPV4, IPV6 = 0x0800, 0x86DD
PROTOCOLS: Final = {6: "tcp", 17: "udp"}

__all__ = ["ApiFailure", "ChatNet", "DaemonApi", "Flow", "LoopbackCapture", "wait_until"]


def wait_until(check: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    """Poll ``check`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


@dataclass
class ChatNet(DaemonNet):
    """A running network with daemons, and read access to the supernodes' files."""

    def data_dir(self, n: int) -> Path:
        """Supernode ``n``'s data directory (as :func:`start_network` names it)."""
        return self.workdir / f"sn{n}"

    def database(self, n: int) -> Path:
        """Supernode ``n``'s offline store."""
        return self.data_dir(n) / OFFLINE_FILE

    def owners(self, user: str, *, ranked: bool = False) -> list[int]:
        """Indexes of the supernodes that own ``user``'s slot while all of them are up
        (in index order, or primary first with ``ranked``)."""
        ids = [p.ready["node_id"] for p in self.nodes]
        ranking = OwnershipMap(sorted(ids), REPLICATION).owners_of_user(user)
        owners = [ids.index(node) for node in ranking]
        return owners if ranked else sorted(owners)

    def index_of(self, address: str) -> int:
        """The index of the supernode listening on ``address`` (``HOST:PORT``)."""
        return next(n for n, p in enumerate(self.nodes) if p.ready["listen"] == address)

    def first_owner(self, user: str, home: str) -> int:
        """The owner that stores what a client homed at ``home`` sends ``user`` offline:
        the home itself when it owns the slot, else the slot's primary."""
        owners, index = self.owners(user, ranked=True), self.index_of(home)
        return index if index in owners else owners[0]

    def held(self, n: int, recipient: str) -> int:
        """Envelopes for ``recipient`` in supernode ``n``'s offline file (0 without one)."""
        path = self.database(n)
        if not path.exists():
            return 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            row = db.execute("SELECT count(*) FROM envelopes WHERE recipient = ?", (recipient,))
            return int(row.fetchone()[0])
        finally:
            db.close()

    def disk_bytes(self, n: int) -> bytes:
        """Every file supernode ``n`` keeps on disk and its log, concatenated."""
        files = sorted(p for p in self.data_dir(n).rglob("*") if p.is_file())
        log = self.cluster.workdir / f"{self.nodes[n].name}.log"
        if log.exists():
            files.append(log)
        return b"".join(p.read_bytes() for p in files)

    def profile_bytes(self, name: str) -> bytes:
        """Every file of profile ``name`` (a device keeps its history in plaintext)."""
        files = sorted(p for p in (self.workdir / name).rglob("*") if p.is_file())
        return b"".join(p.read_bytes() for p in files)

    def api(self, name: str, timeout: float = 30.0) -> DaemonApi:
        """A client for the API of the daemon running on profile ``name``."""
        return DaemonApi(self.workdir / name, timeout)


class ApiFailure(Exception):
    """The daemon answered a request with an error document."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code = status, code


class DaemonApi:
    """The local API of one running daemon, found through its profile."""

    def __init__(self, profile: Path, timeout: float = 30.0) -> None:
        found = read_daemon_info(profile)
        if found is None:
            raise ApiFailure(0, "not-running", f"no daemon runs for {profile}")
        info, token = found
        self._http = httpx.Client(
            base_url=info.api, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
        )
        self.port: int = urlsplit(info.api).port or 80

    def __enter__(self) -> DaemonApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection."""
        self._http.close()

    def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One request; the JSON reply, or :class:`ApiFailure`."""
        response = self._http.request(method, path, json=body, params=params or None)
        if response.status_code >= 400:
            try:
                doc = response.json()
                code, message = str(doc.get("error")), str(doc.get("message"))
            except ValueError:
                code, message = "not-json", response.text[:200]
            raise ApiFailure(response.status_code, code, message)
        return response.json()

    def status(self) -> dict[str, Any]:
        """The daemon's status document."""
        doc: dict[str, Any] = self.call("GET", "/v1/status")
        return doc

    def lookup(self, user: str) -> dict[str, Any]:
        """Where ``user`` is, as the directory says (``state``, ``devices``)."""
        doc: dict[str, Any] = self.call("GET", f"/v1/users/{user}")
        return doc

    def add_contact(self, user: str, message: str = "") -> dict[str, Any]:
        """Ask ``user`` for authorisation."""
        doc: dict[str, Any] = self.call("POST", "/v1/contacts", {"user": user, "message": message})
        return doc

    def contacts(self) -> list[dict[str, Any]]:
        """The contact list."""
        docs: list[dict[str, Any]] = self.call("GET", "/v1/contacts")["contacts"]
        return docs

    def send(self, peer: str, text: str) -> dict[str, Any]:
        """Send ``text`` to a user or a group; the message document."""
        doc: dict[str, Any] = self.call("POST", f"/v1/chats/{peer}/messages", {"text": text})
        return doc

    def history(self, peer: str, limit: int = 50) -> list[dict[str, Any]]:
        """The last ``limit`` messages with ``peer``, oldest first."""
        reply = self.call("GET", f"/v1/chats/{peer}/messages", limit=limit)
        docs: list[dict[str, Any]] = reply["messages"]
        return docs

    def messaging(self) -> dict[str, Any]:
        """The messaging counters."""
        doc: dict[str, Any] = self.call("GET", "/v1/messaging")
        return doc


class Flow(NamedTuple):
    """Where a packet went: ``tcp`` or ``udp``, source and destination ports."""

    protocol: str
    source: int
    destination: int

    def touches(self, ports: set[int]) -> bool:
        """Whether either end is one of ``ports``."""
        return self.source in ports or self.destination in ports


class LoopbackCapture:
    """Every packet on ``lo`` while it runs, searched for ``needle``.

    The kernel copies packets into a memory-mapped ring of blocks
    (``TPACKET_V3``); each filled block is searched once for the needle, and
    only a block that holds it is walked packet by packet to name the flows.
    So the capture keeps up with a busy loopback (other programs' traffic
    included) at the cost of one memory search per block.

    Use as a context manager around the traffic to watch; afterwards
    :attr:`hits` holds each flow a packet carrying the needle belonged to,
    :attr:`packets` how many packets were searched and :attr:`drops` how many
    the kernel could not queue. Opening the socket needs root
    (``PermissionError`` otherwise).
    """

    def __init__(self, needle: bytes, block_bytes: int = 1 << 18, blocks: int = 512) -> None:
        self.needle = needle
        self.hits: set[Flow] = set()
        self.packets = 0
        self.drops = 0
        self._size, self._blocks = block_bytes, blocks
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # nothing until bound
        try:
            self._ring = self._map_ring()
        except OSError:
            self._sock.close()
            raise
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lo-capture", daemon=True)

    def _map_ring(self) -> mmap.mmap:
        self._sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frames = self._size // RING_FRAME * self._blocks
        request = struct.pack(
            "7I", self._size, self._blocks, RING_FRAME, frames, BLOCK_TIMEOUT_MS, 0, 0
        )
        self._sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
        self._sock.bind(("lo", ETH_P_ALL))  # now every packet on lo goes to the ring
        return mmap.mmap(self._sock.fileno(), self._size * self._blocks, mmap.MAP_SHARED)

    def __enter__(self) -> LoopbackCapture:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(2 * BLOCK_TIMEOUT_MS / 1000)  # the last block is handed over
        self._stop.set()
        self._thread.join()
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        self.drops += struct.unpack("3I", raw)[1]
        self._ring.close()
        self._sock.close()

    def _run(self) -> None:
        block = 0
        while True:
            start = block * self._size
            status = struct.unpack_from("I", self._ring, start + BLOCK_STATUS)[0]
            if not status & TP_STATUS_USER:
                if self._stop.is_set():
                    return
                select.select([self._sock], [], [], 0.05)
                continue
            self._search(start)
            struct.pack_into("I", self._ring, start + BLOCK_STATUS, TP_STATUS_KERNEL)
            block = (block + 1) % self._blocks

    def _search(self, start: int) -> None:
        """One block the kernel handed over: count its packets, name the flows of hits."""
        count, first, length = struct.unpack_from("3I", self._ring, start + BLOCK_STATUS + 4)
        self.packets += count
        if self._ring.find(self.needle, start, start + length) < 0:
            return
        offset = start + first
        for _ in range(count):
            following, _, _, captured, _, _, mac = struct.unpack_from("6IH", self._ring, offset)
            frame = self._ring[offset + mac : offset + mac + captured]
            if self.needle in frame:
                self.hits.add(_flow(frame) or Flow("other", 0, 0))
            offset += following


def _flow(frame: bytes) -> Flow | None:
    """The protocol and ports of a TCP or UDP packet in an Ethernet frame."""
    ethertype = int.from_bytes(frame[12:14], "big")
    ip = frame[ETHERNET_HEADER:]
    if ethertype == IPV4 and len(ip) >= 20:
        protocol, transport = ip[9], ip[(ip[0] & 0x0F) * 4 :]
    elif ethertype == IPV6 and len(ip) >= 40:
        protocol, transport = ip[6], ip[40:]
    else:
        return None
    if protocol not in PROTOCOLS or len(transport) < 4:
        return None
    source, destination = struct.unpack("!HH", transport[:4])
    return Flow(PROTOCOLS[protocol], source, destination)
