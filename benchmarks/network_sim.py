"""Membership and directory together: 1,000 supernodes, 100,000 users, churn, one network.

    python benchmarks/network_sim.py [--quick] [--seed N]

Runs :mod:`hopline.testing.network_sim`: every supernode runs the real SWIM
membership core and the real directory store, computes slot owners from its
own membership view, and talks to the others over one simulated network
(5-80 ms per message, seeded). Phases: bootstrap until membership converges,
every user publishes presence, 100,000 lookups from random supernodes for
random users, then 5% of the supernodes crash while 5% new ones join, then 5%
leave gracefully, lookups going on at 500/s. ``--quick``: 200 supernodes,
10,000 users. Prints tables and writes benchmarks/results/network_sim.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.testing.network_sim import NetworkSimConfig, run_network_simulation

LOOKUP_COLUMNS = [
    ("lookups", "lookups"),
    ("answered %", "answered_pct"),
    ("hops/lookup", "hops_mean"),
    ("one-hop %", "one_hop_pct"),
    ("msgs/lookup", "messages_mean"),
    ("msgs p99", "messages_p99"),
    ("p50 ms", "latency_p50_ms"),
    ("p99 ms", "latency_p99_ms"),
    ("timeouts", "timeouts"),
    ("misdirected", "misdirected"),
]


def lookup_rows(phases: dict[str, Any]) -> list[list[Any]]:
    """One row per phase (and per window of the churn phase)."""
    windows = [
        ("steady", phases["lookups"]),
        ("churn: all", phases["churn"]["all"]),
        ("churn: within detection bound", phases["churn"]["within_bound"]),
        ("churn: after detection bound", phases["churn"]["after_bound"]),
        ("graceful leave", phases["leave"]["all"]),
    ]
    return [[name] + [stats.get(key, "-") for _, key in LOOKUP_COLUMNS] for name, stats in windows]


def change_rows(phases: dict[str, Any]) -> list[list[Any]]:
    """Churn and leave: what changed, how long views took, handover results."""
    rows = []
    for name in ("churn", "leave"):
        phase, counters = phases[name], phases[name]["counters"]
        bound = phase.get("detection_bound_s", phase.get("leave_bound_s"))
        rows.append(
            [
                name,
                phase.get("crashed", phase.get("left")),
                phase.get("joined", 0),
                phase["observed_s"],
                bound,
                phase["last_unanswered_s"] if phase["last_unanswered_s"] is not None else "-",
                phase["views_agreeing"],
                phase["replicas_complete_pct"],
                counters.get("handover records", 0),
                counters.get("handover records refused", 0),
                counters.get("replica refused not-owner", 0),
            ]
        )
    return rows


def main() -> None:
    """Run one simulation, print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 supernodes, 10,000 users")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    size = (200, 10_000) if args.quick else (1000, 100_000)
    config = NetworkSimConfig(supernodes=size[0], users=size[1], lookups=size[1], seed=args.seed)
    report = run_network_simulation(config)
    summary = report.summary()
    phases = summary["phases"]
    boot, publish = phases["bootstrap"], phases["publish"]
    print(
        f"{config.supernodes} supernodes, {config.users} users, R={config.replication}; "
        f"membership converged in {boot['converge_s']} s (bound {boot['converge_bound_s']} s); "
        f"{publish['publishes']} publishes, {publish['stored_pct']}% stored, "
        f"{publish['replicas_per_publish']} replicas each, "
        f"replicas complete {publish['replicas_complete_pct']}%"
    )
    print_table(
        "Lookups (simulated time; hops = owners asked one overlay hop away)",
        ["window"] + [title for title, _ in LOOKUP_COLUMNS],
        lookup_rows(phases),
    )
    print_table(
        "Churn and graceful leave",
        [
            "phase",
            "down",
            "joined",
            "observed s",
            "bound s",
            "last unanswered s",
            "views agreeing",
            "replicas complete %",
            "handover records",
            "refused",
            "replicas refused not-owner",
        ],
        change_rows(phases),
    )
    print_table(
        "Wall-clock seconds",
        [*summary["wall_seconds"], "total"],
        [[*summary["wall_seconds"].values(), round(sum(summary["wall_seconds"].values()), 1)]],
    )
    for miss in summary["unanswered"][:5]:
        print(f"unanswered: {miss}")
    write_json("network_sim", summary)


if __name__ == "__main__":
    main()
