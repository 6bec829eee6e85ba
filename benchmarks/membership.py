"""Membership benchmark: convergence, failure detection and steady-state cost.

    python benchmarks/membership.py [--quick]

Runs the SWIM-style membership of :mod:`hopline.overlay.membership` in the
deterministic simulator (20 ms +- 10 ms one-way delay, no loss) for 50, 200
and 1,000 supernodes (``--quick``: 50 and 200) and reports, in simulated
seconds: the time from the last join (one every 10 ms through one seed) until
every node sees every other alive, the time from a crash until the first and
the last member declare it dead (with the configured bounds next to them), and
in steady state the messages and encoded bytes each node sends per second.
Writes benchmarks/results/membership.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.overlay.membership import MemberFailed, MembershipConfig
from hopline.testing.overlay_sim import OverlaySim


def measure(n: int, steady_seconds: float, seed: int = 1) -> dict[str, Any]:
    """One run: join n nodes, converge, measure steady state, crash one."""
    wall = time.perf_counter()
    sim = OverlaySim(seed=seed)
    config: MembershipConfig = sim.config
    first = sim.add_node()
    for _ in range(n - 1):
        sim.add_node([first.address])
        sim.run_for(0.01)
    joined = sim.clock.now()
    sim.run_until(sim.converged, 10 * config.convergence_bound(n), check_every=0.1)
    converge = sim.clock.now() - joined

    sim.wire = True
    messages, nbytes = sim.messages_sent, sim.bytes_sent
    sim.run_for(steady_seconds)
    per_node = n * steady_seconds
    msg_rate = (sim.messages_sent - messages) / per_node
    byte_rate = (sim.bytes_sent - nbytes) / per_node

    victim = sorted(sim.nodes)[n // 2]
    crashed = sim.clock.now()
    sim.crash(victim)
    done = lambda: len(sim.first_event(MemberFailed, victim)) == n - 1  # noqa: E731
    sim.run_until(done, 10 * config.detection_bound(n), check_every=0.1)
    failed = [e.event.at - crashed for e in sim.first_event(MemberFailed, victim)]
    return {
        "n": n,
        "converge_s": round(converge, 2),
        "converge_bound_s": round(config.convergence_bound(n), 1),
        "detect_first_s": round(min(failed), 2),
        "detect_all_s": round(max(failed), 2),
        "detect_bound_s": round(config.detection_bound(n), 1),
        "msgs_per_node_s": round(msg_rate, 2),
        "bytes_per_node_s": round(byte_rate),
        "largest_message": sim.largest_message,
        "wall_s": round(time.perf_counter() - wall, 1),
    }


def main() -> None:
    """Run the sizes and print/write the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="50 and 200 nodes only")
    args = parser.parse_args()
    sizes = [50, 200] if args.quick else [50, 200, 1000]
    steady = 30.0 if args.quick else 90.0
    results = [measure(n, steady) for n in sizes]
    headers = list(results[0])
    rows = [[r[h] for h in headers] for r in results]
    print_table("membership (simulated seconds; steady state with wire encoding)", headers, rows)
    write_json("membership", {"steady_seconds": steady, "results": results})


if __name__ == "__main__":
    main()
