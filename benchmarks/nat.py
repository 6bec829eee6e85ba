"""Time to first packet per NAT pair, and the share of pairs direct vs relayed, on real NATs.

    sudo python benchmarks/nat.py [--runs 10] [--quick] [--write-docs]

Builds the lab of ``tests/netlab/test_path_matrix.py`` (a login server, two
supernodes, two clients of each of the seven classes behind real kernel
NATs made with network namespaces and nftables) and runs the whole 7 x 7
matrix ``--runs`` times (``--quick``: 2). Each run opens a fresh path for
every ordered pair (:mod:`hopline.netlab.matrix`; a round runs seven pairs at
once, every host busy once). For each pair it reports the median time from
the caller's offer to the first authenticated packet from the peer, the
median time to a verified connection, the path kind, and the failures;
then the share of pairs that went direct, relayed over UDP, and relayed
over TCP. ``--write-docs`` puts the tables into docs/nat.md between its
markers. Needs root (netlab); results go to benchmarks/results/nat.json.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import print_table, write_json
from hopline.netlab import Lab, unavailable_reason
from hopline.netlab.matrix import (
    CLASSES,
    PairResult,
    host_name,
    markdown_table,
    rounds,
    run_round,
)
from hopline.netlab.network import LabNetwork

DOCS = Path(__file__).resolve().parent.parent / "docs" / "nat.md"
BEGIN, END = "<!-- nat-matrix:begin -->", "<!-- nat-matrix:end -->"


def run_matrix(network: LabNetwork, runs: int) -> list[PairResult]:
    """Every ordered class pair ``runs`` times."""
    results: list[PairResult] = []
    for n in range(runs):
        started = time.perf_counter()
        for pairs in rounds():
            results += run_round(network, pairs)
        passed = sum(r.passed for r in results[-(len(CLASSES) ** 2) :])
        took = time.perf_counter() - started
        print(f"run {n + 1}/{runs}: {passed}/{len(CLASSES) ** 2} pairs passed in {took:.1f} s")
    return results


def summarize(results: list[PairResult]) -> tuple[list[list[object]], dict[str, object]]:
    """Table rows per pair and the JSON document."""
    by_pair: dict[tuple[str, str], list[PairResult]] = defaultdict(list)
    for r in results:
        by_pair[(r.caller, r.callee)].append(r)
    rows: list[list[object]] = []
    pairs = []
    for (a, b), rs in by_pair.items():
        ok = [r for r in rs if r.passed]
        first = [r.first_packet_ms for r in ok if r.first_packet_ms is not None]
        conn = [r.established_ms for r in ok if r.established_ms is not None]
        median_first = round(statistics.median(first), 1) if first else None
        median_conn = round(statistics.median(conn), 1) if conn else None
        rows.append([a, b, rs[0].expected, f"{len(ok)}/{len(rs)}", median_first, median_conn])
        pairs.append(
            {
                "caller": a,
                "callee": b,
                "expected": rs[0].expected,
                "passed": len(ok),
                "runs": len(rs),
                "first_packet_ms_median": median_first,
                "established_ms_median": median_conn,
                "first_packet_ms": first,
                "errors": sorted({r.error for r in rs if r.error}),
            }
        )
    kinds = Counter(r.kind for r in results if r.passed)
    total = sum(kinds.values()) or 1
    share = {kind: round(count / total, 3) for kind, count in sorted(kinds.items())}
    passed = sum(r.passed for r in results)
    return rows, {"pairs": pairs, "share": share, "passed": passed, "attempts": len(results)}


def write_docs(results: list[PairResult], summary: dict[str, object], runs: int) -> None:
    """Replace the tables between the markers of docs/nat.md."""
    share = summary["share"]
    assert isinstance(share, dict)
    shares = ", ".join(f"{kind} {100 * value:.0f}%" for kind, value in share.items())
    block = "\n\n".join(
        [
            BEGIN,
            f"Measured by `benchmarks/nat.py --runs {runs}` "
            f"({summary['passed']}/{summary['attempts']} paths passed; {shares}).",
            "Path kind (rows: caller's class, columns: callee's class):",
            markdown_table(results, "kind"),
            "Median time from the caller's offer to the first authenticated packet from the peer:",
            markdown_table(results, "first_packet_ms"),
            "Median time from the caller's offer to the verified secure connection on "
            "the chosen pair (a relay is taken only after direct pairs had their "
            "2 s to answer):",
            markdown_table(results, "established_ms"),
            END,
        ]
    )
    text = DOCS.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    DOCS.write_text(pattern.sub(lambda _: block, text), encoding="utf-8")
    print(f"updated {DOCS}")


def main() -> int:
    """Build the lab, run the matrix, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="two runs")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason is not None:
        print(f"benchmarks/nat.py needs netlab (root and nftables): {reason}", file=sys.stderr)
        return 2
    runs = 2 if args.quick else args.runs
    with tempfile.TemporaryDirectory(prefix="hopline-nat-") as tmp, Lab(Path(tmp) / "lab") as lab:
        network = LabNetwork(lab, Path(tmp))
        network.start(supernodes=2)
        network.clients_of({host_name(nat, n): nat for nat in CLASSES for n in (1, 2)})
        results = run_matrix(network, runs)
    rows, summary = summarize(results)
    headers = ["caller", "callee", "expected", "passed", "first pkt ms", "connected ms"]
    print_table(f"Paths on real NATs, median of {runs} runs", headers, rows)
    print(f"\nshare of pairs: {summary['share']}")
    write_json("nat", {"runs": runs, **summary})
    if args.write_docs:
        write_docs(results, summary, runs)
    return 0 if summary["passed"] == summary["attempts"] else 1


if __name__ == "__main__":
    sys.exit(main())
