"""File-transfer core benchmark: chunks through an in-memory pipe, no disk, no sockets.

    python benchmarks/files.py [--quick]

A :class:`~hopline.files.transfer.TransferTable` on each side of two deques:
the sender frames each chunk (SHA-256 of the chunk), the wire codec encodes and
decodes every message, the receiver checks offset, size and the chunk's SHA-256,
hashes the stream for the whole-file check and acks; acks open the sender's
window. The source is random bytes in memory, so the figure is the cost of
hashing and framing alone: what the core adds on top of the path's encryption
and the disk. Beside it: plain ``hashlib.sha256`` over the same bytes (the core
hashes every byte twice on the receiver and once on the sender).

``--loopback`` adds the end-to-end figure: a login server and a supernode as
real processes on loopback, two logged-in clients in this process with path
managers and :class:`~hopline.files.service.FileService`, a random file sent
over a direct path and over a forced relay (through the supernode), real
files on disk at both ends. The rate is the file's size over the time from
the accept to the receiver's saved, verified file. Beside it, what the
transfer cost in CPU (seconds per MB, both clients' process and the
supernode's), which does not depend on what else runs on a shared machine,
and every relay drop the supernode counted meanwhile (rate limits, full
queues). ``--uvloop`` runs the clients on uvloop, as the daemon does
(:func:`hopline.runtime.loop.run`); the supernode always does. Writes
benchmarks/results/files.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hopline.wire.files  # registers the file-transfer commands
from _common import print_table, write_json
from hopline.client.session import ClientSession, SessionConfig
from hopline.demo.cluster import Cluster
from hopline.files.service import FileConfig, FileService
from hopline.files.transfer import (
    Completed,
    FileSender,
    Offered,
    Send,
    TransferEvent,
    TransferTable,
    Verified,
    WriteChunk,
)
from hopline.path.manager import PathConfig, PathManager
from hopline.runtime.loop import run as run_loop
from hopline.testing.network import logged_in, scrape_metrics, start_network
from hopline.wire import decode, encode

MB = 1024 * 1024


def run_transfer(data: bytes, chunk_size: int, window: int) -> tuple[float, int]:
    """Move ``data`` once through both tables; returns (seconds, bytes handed to the writer)."""
    alice, bob = TransferTable(), TransferTable()
    to_bob: deque[bytes] = deque()
    to_alice: deque[bytes] = deque()
    digest = hashlib.sha256(data).digest()
    view = memoryview(data)
    written = 0
    done = False
    start = time.perf_counter()
    sender = FileSender(
        os.urandom(16), "bench.bin", len(data), digest, chunk_size=chunk_size, window=window
    )
    for event in alice.add_sender(sender, 0.0):
        if isinstance(event, Send):
            to_bob.append(encode(event.message))

    def on_bob(events: list[TransferEvent]) -> None:
        nonlocal written
        for event in events:
            if isinstance(event, Offered):
                on_bob(event.receiver.accept(0.0))
            elif isinstance(event, WriteChunk):
                written += len(event.data)
            elif isinstance(event, Send):
                to_alice.append(encode(event.message))
            elif isinstance(event, Verified):
                on_bob(bob.receivers[event.transfer_id].saved(0.0))

    while not done:
        while (wanted := sender.next_range()) is not None:
            offset, length = wanted
            to_bob.append(encode(sender.chunk(offset, bytes(view[offset : offset + length]), 0.0)))
        while to_bob:
            on_bob(bob.receive(decode(to_bob.popleft()), 0.0))  # type: ignore[arg-type]
        while to_alice:
            events = alice.receive(decode(to_alice.popleft()), 0.0)  # type: ignore[arg-type]
            done = done or any(isinstance(e, Completed) for e in events)
    return time.perf_counter() - start, written


def sha256_rate(data: bytes) -> float:
    """MB/s of one plain SHA-256 pass over ``data``."""
    start = time.perf_counter()
    hashlib.sha256(data).digest()
    return len(data) / MB / (time.perf_counter() - start)


async def _client(
    workdir: Path, ls: Any, name: str, bind: str, direct: bool, chunk_size: int
) -> Any:
    """A logged-in client with paths and a file service; returns its parts."""
    profile = await logged_in(workdir, ls, name, bind=bind)
    session = ClientSession(profile, SessionConfig(keepalive_s=1.0))
    await session.connect()
    paths = PathManager(session, PathConfig(direct=direct))
    await paths.start()
    downloads = workdir / f"{name}-downloads"
    downloads.mkdir()
    files = FileService(paths, downloads=downloads, config=FileConfig(chunk_size=chunk_size))
    files.start()
    keeper = asyncio.get_running_loop().create_task(session.run())
    return session, paths, files, keeper


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _relay_drops(node: Any) -> dict[str, float]:
    """The supernode's relay drop counters (``relay:*``) from its metrics endpoint."""
    samples = scrape_metrics(node.ready["metrics"])
    prefix = 'hopline_supernode_dropped_total{reason="relay'
    return {k.split('"')[1]: v for k, v in samples.items() if k.startswith(prefix)}


async def _one_loopback(
    workdir: Path, ls: Any, node: Any, source: Path, run: int, direct: bool, chunk_size: int
) -> dict[str, Any]:
    """Send ``source`` from one new client to another: seconds from accept to saved,
    CPU seconds of this process and of the supernode meanwhile, relay drops."""
    options = (direct, chunk_size)
    alice = await _client(workdir, ls, f"alice{run}", f"127.0.0.{20 + 2 * run}", *options)
    bob = await _client(workdir, ls, f"bob{run}", f"127.0.0.{21 + 2 * run}", *options)
    try:
        sent = await alice[2].send(bob[0].user, source)
        while not bob[2].offers():
            await asyncio.sleep(0.01)
        drops = _relay_drops(node)
        cpu = (_cpu_seconds(os.getpid()), _cpu_seconds(node.pid))
        start = time.perf_counter()
        await bob[2].accept(sent["transfer_id"])
        got = await bob[2].wait(sent["transfer_id"], 600)
        elapsed = time.perf_counter() - start
        clients, supernode = _cpu_seconds(os.getpid()) - cpu[0], _cpu_seconds(node.pid) - cpu[1]
        assert got["state"] == "complete", got
        assert got["path"] == ("direct" if direct else "relay"), got["path"]
        assert hashlib.sha256(Path(got["saved_to"]).read_bytes()).hexdigest() == got["sha256"]
        Path(got["saved_to"]).unlink()
        after = _relay_drops(node)
        dropped = {k: v - drops.get(k, 0) for k, v in after.items() if v > drops.get(k, 0)}
        return {"seconds": elapsed, "clients_cpu": clients, "sn_cpu": supernode, "drops": dropped}
    finally:
        for session, paths, files, keeper in (alice, bob):
            await files.close()
            keeper.cancel()
            await paths.close()
            await session.close()


def run_loopback(size: int, uvloop: bool = False) -> list[dict[str, Any]]:
    """Direct and relayed end-to-end transfers of ``size`` random bytes, two chunk sizes."""
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp) / "logs") as cluster:
        workdir = Path(tmp)
        ls, nodes = start_network(cluster, workdir, supernodes=1)
        source = workdir / "source.bin"
        source.write_bytes(os.urandom(size))
        run = 0
        for direct in (True, False):
            for chunk_size in (32 * 1024, 63 * 1024):
                work = _one_loopback(workdir, ls, nodes[0], source, run, direct, chunk_size)
                got = run_loop(work, use_uvloop=uvloop)
                run += 1
                seconds, mb = got["seconds"], size / MB
                results.append(
                    {
                        "path": "direct" if direct else "relay",
                        "chunk_size": chunk_size,
                        "seconds": round(seconds, 2),
                        "mb_per_s": round(mb / seconds, 1),
                        "clients_cpu_s_per_mb": round(got["clients_cpu"] / mb, 4),
                        "supernode_cpu_s_per_mb": round(got["sn_cpu"] / mb, 4),
                        "relay_drops": got["drops"],
                    }
                )
    return results


def main() -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="16 MB instead of 128 MB")
    parser.add_argument(
        "--loopback", action="store_true", help="also send 100 MB (quick: 16) end to end"
    )
    parser.add_argument(
        "--uvloop", action="store_true", help="run the clients on uvloop, as the daemon does"
    )
    args = parser.parse_args()
    size = (16 if args.quick else 128) * MB
    data = os.urandom(size)
    assert hopline.wire.files.FileChunk.COMMAND == 0x00A3
    rows, results = [], []
    for chunk_size in (16 * 1024, 32 * 1024, 63 * 1024):
        best = min(run_transfer(data, chunk_size, 2 * MB)[0] for _ in range(3))
        _, written = run_transfer(data, chunk_size, 2 * MB)
        assert written == size
        rate = size / MB / best
        results.append({"chunk_size": chunk_size, "mb_per_s": round(rate, 1)})
        rows.append([f"{chunk_size // 1024} KiB", f"{rate:.0f}", f"{size // chunk_size}"])
    plain = max(sha256_rate(data) for _ in range(3))
    print_table(
        f"file transfer core, {size // MB} MB in memory, 2 MiB window (best of 3)",
        ["chunk", "MB/s", "chunks"],
        rows,
    )
    print(f"\nplain SHA-256 on this CPU: {plain:.0f} MB/s (the core hashes each byte 3 times)")
    doc: dict[str, Any] = {
        "size_mb": size // MB,
        "transfer": results,
        "sha256_mb_per_s": round(plain, 1),
    }
    if args.loopback:
        loop_size = (16 if args.quick else 100) * MB
        doc["loopback_size_mb"] = loop_size // MB
        doc["loopback_loop"] = "uvloop" if args.uvloop else "asyncio"
        doc["loopback"] = run_loopback(loop_size, uvloop=args.uvloop)
        print_table(
            f"file transfer end to end on loopback, {loop_size // MB} MB, real processes, "
            f"clients on {doc['loopback_loop']}",
            ["path", "chunk", "seconds", "MB/s", "clients CPU s/MB", "SN CPU s/MB", "drops"],
            [
                [
                    r["path"],
                    f"{r['chunk_size'] // 1024} KiB",
                    r["seconds"],
                    r["mb_per_s"],
                    f"{r['clients_cpu_s_per_mb']:.3f}",
                    f"{r['supernode_cpu_s_per_mb']:.3f}",
                    sum(r["relay_drops"].values()),
                ]
                for r in doc["loopback"]
            ],
        )
    write_json("files", doc)


if __name__ == "__main__":
    main()
