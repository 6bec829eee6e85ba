"""Reliable-channel goodput: over loopback UDP (clean and lossy), and simulated under loss.

    python benchmarks/goodput.py [--quick] [--runs N]

1. **Loopback UDP**: 20,000 reliable 1,000-byte messages (``--quick``: 2,000)
   from one ``UdpEndpoint`` to another, directly and through an
   ``ImpairingForwarder`` dropping 10% each way; the time runs until every
   message arrived and was acknowledged. Both links run in this one process
   (one core), so the figures are a floor for two processes on two cores. A
   lossy run's time depends mostly on how many RTOs its last losses needed,
   so each case runs ``--runs`` times (default 5) and the median is shown.
2. **Simulated**: the same links under a ``MockClock`` through ``FakeNet``,
   3,000 messages (``--quick``: 1,000) over three impaired paths, 50 seeds
   each (``--quick``: 5): mean and median simulated time to deliver and
   acknowledge everything, retransmissions, duplicates the receiver saw, and
   datagrams both ways. Deterministic: a change to the transport shows up
   here exactly, free of the noise of a shared machine.

Used by benchmarks/wire.py (``goodput_rows``); run alone it prints both
tables and writes benchmarks/results/goodput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.runtime.loop import run
from hopline.runtime.udp import UdpEndpoint
from hopline.testing.forwarder import ImpairingForwarder
from hopline.testing.lossy import FakeNet, ImpairmentConfig
from hopline.transport import Link

MESSAGE_SIZE = 1000
LOSSES = (0.0, 0.10)
SIMULATED_PATHS = {
    "20% loss, 5% dup/reorder, 10+-4 ms": ImpairmentConfig(
        drop=0.20, duplicate=0.05, reorder=0.05, reorder_delay=0.02, delay=0.01, jitter=0.004
    ),
    "10% loss, 10 ms": ImpairmentConfig(drop=0.10, delay=0.01),
    "10% loss, 1 ms": ImpairmentConfig(drop=0.10, delay=0.001),
}


async def measure(loss: float, messages: int) -> dict[str, Any]:
    """Send ``messages`` reliable 1,000-byte messages; time until all arrive, acked."""
    server = await UdpEndpoint.bind("127.0.0.1", 0)
    client = await UdpEndpoint.bind("127.0.0.1", 0)
    forwarder = None
    target = server.local_address
    if loss > 0:
        config = ImpairmentConfig(drop=loss)
        forwarder = await ImpairingForwarder.start(target, config, seed=1, reverse=config)
        target = forwarder.address
    try:
        link = await client.connect(target)
        payload = b"x" * MESSAGE_SIZE
        started = time.perf_counter()

        async def send_all() -> None:
            for _ in range(messages):
                await link.send(payload)

        async def receive_all() -> int:
            peer = await server.accept()
            total = 0
            for _ in range(messages):
                total += len((await peer.receive()).data)
            return total

        sender = asyncio.ensure_future(send_all())
        received = await receive_all()
        await sender
        await link.flush()
        seconds = time.perf_counter() - started
        stats = link.stats
    finally:
        client.close()
        server.close()
        if forwarder is not None:
            forwarder.close()
    if received != messages * MESSAGE_SIZE:
        raise RuntimeError(f"received {received} bytes, expected {messages * MESSAGE_SIZE}")
    return {
        "loss": loss,
        "messages": messages,
        "seconds": round(seconds, 3),
        "megabytes_per_s": round(received / seconds / 1e6, 2),
        "retransmitted": stats.segments_retransmitted,
        "rto_expirations": stats.rto_expirations,
        "srtt_ms": round((stats.srtt or 0) * 1000, 2),
    }


def measure_median(loss: float, messages: int, runs: int) -> dict[str, Any]:
    """``runs`` measurements; the one with the median time, plus the spread."""
    results = sorted((run(measure(loss, messages)) for _ in range(runs)), key=_seconds)
    median = dict(results[len(results) // 2])
    speeds = [r["megabytes_per_s"] for r in results]
    median.update(runs=runs, min_megabytes_per_s=min(speeds), max_megabytes_per_s=max(speeds))
    return median


def _seconds(result: dict[str, Any]) -> float:
    return float(result["seconds"])


def goodput_rows(quick: bool, runs: int = 1) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Measure at 0% and 10% loss; rows (loss, messages, MB/s, retransmitted, seconds)
    for the table and results for JSON."""
    count = 2000 if quick else 20000
    results = [measure_median(loss, count, runs) for loss in LOSSES]
    rows = [
        [f"{r['loss']:.0%}", r["messages"], r["megabytes_per_s"], r["retransmitted"], r["seconds"]]
        for r in results
    ]
    return rows, results


def _udp_row(result: dict[str, Any]) -> list[Any]:
    spread = f"{result['min_megabytes_per_s']}-{result['max_megabytes_per_s']}"
    return [
        f"{result['loss']:.0%}",
        result["messages"],
        result["megabytes_per_s"],
        spread,
        result["retransmitted"],
        result["rto_expirations"],
        result["seconds"],
    ]


def simulate(path: ImpairmentConfig, messages: int, seed: int) -> dict[str, float]:
    """One simulated transfer: simulated seconds and counters, exactly-once checked."""
    a, b = Link(), Link()
    net = FakeNet(a, b, a_to_b=path, b_to_a=path, seed=seed)
    rng = random.Random(seed)
    sent = [i.to_bytes(4, "big") + rng.randbytes(rng.randrange(300)) for i in range(messages)]
    for message in sent:
        a.send(message, 0.0)
    if not net.run_until_idle(timeout=600.0) or net.b_messages != sent:
        raise RuntimeError(f"simulated transfer failed (seed {seed})")
    return {
        "seconds": net.clock.now(),
        "retransmitted": a.stats.segments_retransmitted,
        "duplicates": b.stats.duplicates_received,
        "datagrams": a.stats.datagrams_sent + b.stats.datagrams_sent,
    }


def simulated_rows(quick: bool) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Every simulated path over a range of seeds; rows for the table and results for JSON."""
    messages, seeds = (1000, 5) if quick else (3000, 50)
    rows, results = [], []
    for name, path in SIMULATED_PATHS.items():
        runs = [simulate(path, messages, seed) for seed in range(1, seeds + 1)]
        times = [r["seconds"] for r in runs]
        result = {
            "path": name,
            "messages": messages,
            "seeds": seeds,
            "mean_seconds": round(statistics.mean(times), 3),
            "median_seconds": round(statistics.median(times), 3),
            **{k: round(statistics.mean(r[k] for r in runs), 1) for k in runs[0] if k != "seconds"},
        }
        results.append(result)
        rows.append([name, *list(result.values())[1:]])
    return rows, results


def main() -> None:
    """Run both parts, print their tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer messages, runs and seeds")
    parser.add_argument("--runs", type=int, default=None, help="loopback runs per case (5)")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 5)
    _, udp_results = goodput_rows(args.quick, runs)
    print_table(
        f"reliable channel goodput over loopback UDP (1,000-byte messages, median of {runs})",
        ["loss", "messages", "MB/s", "MB/s range", "retransmitted", "RTOs", "seconds"],
        [_udp_row(r) for r in udp_results],
    )
    sim_rows, sim_results = simulated_rows(args.quick)
    print_table(
        "simulated transfers (MockClock, FakeNet; means over seeds)",
        [
            "path",
            "messages",
            "seeds",
            "mean s",
            "median s",
            "retransmitted",
            "duplicates",
            "datagrams",
        ],
        sim_rows,
    )
    write_json("goodput", {"quick": args.quick, "udp": udp_results, "simulated": sim_results})


if __name__ == "__main__":
    main()
