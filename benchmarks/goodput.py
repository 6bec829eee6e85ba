"""Reliable-channel goodput over loopback UDP, clean and through a lossy forwarder.

Used by benchmarks/wire.py; runnable alone: ``python benchmarks/goodput.py``.
Both links run in this one process (one core): the figures are a floor for
what two processes on two cores reach.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table
from hopline.runtime.loop import run
from hopline.runtime.udp import UdpEndpoint
from hopline.testing.forwarder import ImpairingForwarder
from hopline.testing.lossy import ImpairmentConfig

MESSAGE_SIZE = 1000


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
        "srtt_ms": round((stats.srtt or 0) * 1000, 2),
    }


def goodput_rows(quick: bool) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """Measure at 0% and 10% loss; rows for the table and results for JSON."""
    count = 2000 if quick else 20000
    results = [run(measure(loss, count)) for loss in (0.0, 0.10)]
    rows = [
        [f"{r['loss']:.0%}", r["messages"], r["megabytes_per_s"], r["retransmitted"], r["seconds"]]
        for r in results
    ]
    return rows, results


if __name__ == "__main__":
    table_rows, _ = goodput_rows("--quick" in sys.argv)
    print_table(
        "reliable channel goodput over loopback UDP (1,000-byte messages)",
        ["loss", "messages", "MB/s", "retransmitted", "seconds"],
        table_rows,
    )
