"""Directory simulation: 1,000 supernodes, 100,000 users, every user looked up.

    python benchmarks/directory_sim.py [--quick] [--signed]

Builds the one-hop overlay in process (see :mod:`hopline.testing.directory_sim`),
places each user's presence record on the R=3 owners of its slot, crashes 1% of
the supernodes, looks every user up from a random live supernode, and measures
churn when one supernode joins or leaves. Certificates are checked by a
signature-less stub unless ``--signed`` (real Ed25519 certificates, slower).
Prints tables and writes benchmarks/results/directory_sim.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.overlay.slots import OwnershipMap
from hopline.testing.directory_sim import SimConfig, run_simulation


def churn(members: int, replication: int, slots: int) -> dict[str, Any]:
    """Slot-replicas moved when one node joins and when one node leaves."""
    ids = [f"sn-{n:05d}" for n in range(members)]
    start = time.perf_counter()
    base = OwnershipMap(ids, replication, slots)
    joined = OwnershipMap([*ids, "sn-new"], replication, slots)
    left = OwnershipMap(ids[1:], replication, slots)
    moves_join = len(base.transfers_to(joined))
    moves_leave = len(base.transfers_to(left))
    return {
        "members": members,
        "slot_replicas": replication * slots,
        "join_moved": moves_join,
        "join_expected": round(replication * slots / (members + 1), 1),
        "leave_moved": moves_leave,
        "leave_node_held": len(base.slots_owned_by(ids[0])),
        "seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 supernodes, 10,000 users")
    parser.add_argument("--signed", action="store_true", help="real signed certificates")
    args = parser.parse_args()
    size = (200, 10_000) if args.quick else (1000, 100_000)
    config = SimConfig(
        supernodes=size[0], users=size[1], crashed=size[0] // 100, signed=args.signed
    )
    summary = run_simulation(config).summary()
    print_table(
        "Directory lookups (one-hop overlay, R=3, 1% of supernodes crashed)",
        [
            "supernodes",
            "users",
            "lookups",
            "answered %",
            "hops/lookup",
            "messages/lookup",
            "p50 ms",
            "p99 ms",
        ],
        [
            [
                summary["supernodes"],
                summary["users"],
                summary["lookups"],
                summary["answered_pct"],
                summary["hops_per_lookup"],
                summary["messages_per_lookup"],
                summary["p50_ms"],
                summary["p99_ms"],
            ]
        ],
    )
    print(
        f"answered locally {summary['answered_locally']}, retries after a crashed owner "
        f"{summary['retries']}, hops per remote lookup {summary['hops_per_remote_lookup']}, "
        f"records/node {summary['records_per_node']}, seconds {summary['seconds']}"
    )
    moved = churn(config.supernodes, config.replication, config.slots)
    print_table(
        "Handover churn (slot-replicas moved)",
        ["members", "slot-replicas", "join moved", "join expected", "leave moved", "leaver held"],
        [
            [
                moved["members"],
                moved["slot_replicas"],
                moved["join_moved"],
                moved["join_expected"],
                moved["leave_moved"],
                moved["leave_node_held"],
            ]
        ],
    )
    write_json("directory_sim", {"lookups": summary, "churn": moved})


if __name__ == "__main__":
    main()
