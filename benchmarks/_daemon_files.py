"""File transfer between two daemon processes, as users run them, for the messaging benchmark.

``benchmarks/files.py --loopback`` puts both clients in the benchmark's own
process, so one core carries the sender and the receiver together. Here each
user runs ``hopline up`` as a process of its own, as on two machines, and the
transfer is driven through the local API: alice offers the file, bob accepts
it, and the time from the accept to bob's verified file is measured (the
daemon's default chunk size and window). ``--relay-only`` on both daemons
forces the path through their home supernode. Beside the rate: the CPU
seconds per MB of each daemon and of the supernode, read from /proc.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from hopline.demo.cluster import Cluster
from hopline.testing.chat import DaemonApi
from hopline.testing.daemons import DaemonNet
from hopline.testing.network import start_network

MB = 1024 * 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pair(net: DaemonNet, tag: str, *extra: str) -> dict[str, Any]:
    """alice and bob daemons (with ``extra`` options), registered, logged in, online."""
    procs = {}
    for user in (f"alice{tag}", f"bob{tag}"):
        procs[user] = net.up(user, *extra)
        net.cli(user, "register", user)
        net.cli(user, "login", user)
        net.wait_online(user)
    return procs


def _offered(bob: DaemonApi, sha256: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for transfer in bob.call("GET", "/v1/files")["transfers"]:
            if transfer["sha256"] == sha256 and transfer["state"] == "offered":
                return str(transfer["transfer_id"])
        time.sleep(0.02)
    raise RuntimeError("bob never saw the offer")


def _transfer(net: DaemonNet, tag: str, source: Path, digest: str) -> dict[str, Any]:
    alice, bob = f"alice{tag}", f"bob{tag}"
    with net_api(net, alice) as a, net_api(net, bob) as b:
        a.call("POST", "/v1/files", {"peer": bob, "path": str(source)})
        transfer_id = _offered(b, digest)
        into = net.workdir / f"{bob}-in"
        into.mkdir()
        b.call("POST", f"/v1/files/{transfer_id}/accept", {"to_dir": str(into)})
        start = time.perf_counter()
        while True:
            done = b.call("GET", f"/v1/files/{transfer_id}/wait", timeout_s=600)
            if done["state"] not in ("offered", "transferring", "verifying", "interrupted"):
                break
        elapsed = time.perf_counter() - start
    if done["state"] != "complete":
        raise RuntimeError(f"the transfer ended {done['state']}: {done['detail']}")
    saved = Path(done["saved_to"])
    if hashlib.sha256(saved.read_bytes()).hexdigest() != digest:
        raise RuntimeError("the saved file differs")
    saved.unlink()
    return {"seconds": elapsed, "path": done["path"]}


def net_api(net: DaemonNet, user: str) -> DaemonApi:
    """The local API of ``user``'s daemon, with a long timeout for the long poll."""
    return DaemonApi(net.workdir / user, timeout=700)


def run_daemons(size: int) -> list[dict[str, Any]]:
    """A direct and a relayed transfer of ``size`` random bytes between two daemons."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, Cluster(Path(tmp) / "logs") as cluster:
        workdir = Path(tmp)
        ls, nodes = start_network(cluster, workdir, supernodes=1)
        net = DaemonNet(cluster, ls, nodes, workdir)
        source = workdir / "source.bin"
        source.write_bytes(os.urandom(size))
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        for tag, extra in (("d", ()), ("r", ("--relay-only",))):
            procs = _pair(net, tag, *extra)
            pids = {"alice": procs[f"alice{tag}"].pid, "bob": procs[f"bob{tag}"].pid}
            pids["supernode"] = nodes[0].pid
            before = {who: cpu_seconds(pid) for who, pid in pids.items()}
            got = _transfer(net, tag, source, digest)
            mb = size / MB
            cpu = {who: (cpu_seconds(pid) - before[who]) / mb for who, pid in pids.items()}
            rows.append(
                {
                    "path": got["path"],
                    "seconds": round(got["seconds"], 2),
                    "mb_per_s": round(mb / got["seconds"], 1),
                    "alice_cpu_s_per_mb": round(cpu["alice"], 4),
                    "bob_cpu_s_per_mb": round(cpu["bob"], 4),
                    "supernode_cpu_s_per_mb": round(cpu["supernode"], 4),
                }
            )
    return rows
