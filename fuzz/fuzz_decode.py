"""Fuzz hopline.wire.decode: at least a million inputs, only WireError allowed.

    python fuzz/fuzz_decode.py [--inputs N] [--seed S] [--json PATH]

Inputs come from a seeded mutator: pure random bytes, and valid messages (the
spec's test vectors and messages built here) with bytes flipped, inserted,
deleted, duplicated, truncated and spliced together. Every input is decoded;
the run fails (exit 1) if anything but a WireError escapes, if one input takes
longer than the per-input bound, or if tracemalloc sees decoding allocate
beyond what the limits allow. It prints a table of outcomes and the count it
ran, and writes the same as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path

from hopline.wire import WireError, decode, encode
from hopline.wire.commands import Echo, Forward, Ping

ROOT = Path(__file__).resolve().parents[1]
SLOW_INPUT_S = 0.05
MEMORY_BOUND = 4 * 65536  # a decode may copy its input and build objects: a few times the max


def corpus() -> list[bytes]:
    """Valid messages to mutate: the spec's vectors plus a few built here."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    found = re.findall(r"```hex\n(.*?)\n```", text, flags=re.S)
    seeds = [bytes.fromhex(h.replace(" ", "")) for h in found]
    seeds += [
        encode(Ping(nonce=2**63, sent_at_us=12345, request_id=2**31)),
        encode(Echo(data=bytes(range(256)))),
        encode(Forward(payload=seeds[0] if seeds else b"", to_user="x" * 40, hop_limit=9)),
    ]
    return seeds


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    """One fuzz input."""
    if rng.random() < 0.15:
        return rng.randbytes(rng.randint(0, 300))
    data = bytearray(rng.choice(seeds))
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        where = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(where, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            data[where:where] = rng.randbytes(rng.randint(1, 8))
        elif op == 2:
            del data[where : where + rng.randint(1, 8)]
        elif op == 3 and data:
            data[min(where, len(data) - 1)] = rng.choice((0x00, 0x7F, 0x80, 0xFF))
        elif op == 4:
            data = data[:where]
        else:
            other = rng.choice(seeds)
            data[where:] = other[rng.randint(0, len(other)) :]
    return bytes(data)


def run(inputs: int, seed: int) -> dict[str, object]:
    """Decode ``inputs`` mutated inputs; return the outcome counts."""
    rng = random.Random(seed)
    seeds = corpus()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    slowest = 0.0
    start = time.perf_counter()
    for index in range(inputs):
        data = mutate(rng, seeds)
        began = time.perf_counter()
        try:
            decode(data)
            outcomes["decoded"] += 1
        except WireError as exc:
            outcomes[exc.reason] += 1
        except Exception as exc:  # noqa: BLE001 -- any other exception is the finding
            outcomes["CRASH"] += 1
            if len(failures) < 20:
                failures.append(f"input {index} {data.hex()}: {type(exc).__name__}: {exc}")
        slowest = max(slowest, time.perf_counter() - began)
    elapsed = time.perf_counter() - start
    return {
        "inputs": inputs,
        "seed": seed,
        "seconds": round(elapsed, 2),
        "inputs_per_second": round(inputs / elapsed),
        "slowest_input_ms": round(slowest * 1000, 3),
        "outcomes": dict(outcomes.most_common()),
        "failures": failures,
    }


def memory_check(seed: int, samples: int = 2000) -> int:
    """Peak bytes traced while decoding a sample of inputs, one at a time."""
    rng = random.Random(seed + 1)
    seeds = corpus()
    worst = 0
    for _ in range(samples):
        data = mutate(rng, seeds)
        tracemalloc.start()
        try:
            decode(data)
        except WireError as exc:
            del exc
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        worst = max(worst, peak)
    return worst


def main() -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/fuzz_decode.json")
    args = parser.parse_args()
    result = run(args.inputs, args.seed)
    result["peak_memory_bytes"] = memory_check(args.seed)
    ok = (
        not result["failures"]
        and float(str(result["slowest_input_ms"])) < SLOW_INPUT_S * 1000
        and int(str(result["peak_memory_bytes"])) < MEMORY_BOUND
    )
    result["ok"] = ok
    print(f"fuzzed hopline.wire.decode with {result['inputs']:,} inputs (seed {args.seed})")
    print(f"{'outcome':<14}{'count':>12}")
    for outcome, count in dict(result["outcomes"]).items():  # type: ignore[call-overload]
        print(f"{outcome:<14}{count:>12,}")
    print(
        f"rate {result['inputs_per_second']:,}/s, slowest input {result['slowest_input_ms']} ms,"
        f" peak memory {result['peak_memory_bytes']:,} bytes"
    )
    for failure in result["failures"]:  # type: ignore[attr-defined]
        print("FAIL", failure)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
